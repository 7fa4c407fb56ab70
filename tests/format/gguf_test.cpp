// gguf::File and gguf::Writer: round trips, and one test per defect a hostile or damaged
// file can have. Defective files are built byte by byte so each test says exactly what is
// wrong with its input.
#include "format/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "support/errors.h"
#include "support/shared.h"

namespace tapml::gguf {
namespace {

using testing::contains;
using testing::error_of;

namespace fs = std::filesystem;

// The message and the part it should contain, both shown on failure.
// Little-endian byte building for hand-made files.
struct Bytes {
  std::vector<uint8_t> b;
  template <class T>
  Bytes& put(T x) {
    uint8_t tmp[sizeof(T)];
    std::memcpy(tmp, &x, sizeof(T));
    b.insert(b.end(), tmp, tmp + sizeof(T));
    return *this;
  }
  Bytes& u32(uint32_t x) { return put(x); }
  Bytes& u64(uint64_t x) { return put(x); }
  Bytes& str(const std::string& s) {
    u64(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& raw(const std::vector<uint8_t>& x) {
    b.insert(b.end(), x.begin(), x.end());
    return *this;
  }
  Bytes& pad_to(size_t alignment) {
    while (b.size() % alignment) b.push_back(0);
    return *this;
  }
  Bytes& zeros(size_t n) {
    b.insert(b.end(), n, 0);
    return *this;
  }
  size_t size() const { return b.size(); }
};

Bytes header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  Bytes h;
  h.raw({'G', 'G', 'U', 'F'}).u32(version).u64(n_tensors).u64(n_kv);
  return h;
}

// A tensor info record; ne in GGUF order (fastest first).
void tensor_info(Bytes& b, const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                 uint64_t offset) {
  b.str(name).u32(uint32_t(ne.size()));
  for (uint64_t d : ne) b.u64(d);
  b.u32(type).u64(offset);
}

File parse(const Bytes& b, const std::string& name = "x.gguf") {
  return File::from_memory(nullptr, b.b.data(), b.b.size(), name);
}

std::string parse_error(const Bytes& b) {
  return error_of([&] { parse(b); });
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

Value u(ValueType t, uint64_t x) { return Value{t, x}; }
Value i(ValueType t, int64_t x) { return Value{t, x}; }
Value s(const std::string& x) { return Value{ValueType::STRING, x}; }
Value arr(ValueType elem, Array items) { return Value{ValueType::ARRAY, std::move(items), elem}; }

Tensor f32_tensor(Shape shape, float start) {
  std::vector<float> v(size_t(shape.numel()));
  for (size_t k = 0; k < v.size(); ++k) v[k] = start + float(k) * 0.25f;
  return Tensor::from_f32(std::move(shape), v);
}

Tensor half_tensor(DType dt, Shape shape, float start) {
  Tensor t(dt, std::move(shape));
  auto* p = t.mutable_data<uint16_t>();
  for (int64_t k = 0; k < t.numel(); ++k) {
    float x = start - float(k) * 0.5f;
    p[k] = dt == DType::F16 ? f32_to_f16(x) : f32_to_bf16(x);
  }
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.bytes(), b.bytes(), a.nbytes()) == 0;
}

// ---------------------------------------------------------------------------------------
// Round trips

TEST(GgufWriter, RoundTripsEveryValueTypeAndTensorDtype) {
  Writer w;
  std::map<std::string, Value> expected;
  auto put = [&](const std::string& k, Value v) {
    w.set(k, v);
    expected[k] = v;
  };
  put("t.u8", u(ValueType::U8, 255));
  put("t.i8", i(ValueType::I8, -128));
  put("t.u16", u(ValueType::U16, 65535));
  put("t.i16", i(ValueType::I16, -32768));
  put("t.u32", u(ValueType::U32, 4000000000u));
  put("t.i32", i(ValueType::I32, -2000000000));
  put("t.u64", u(ValueType::U64, std::numeric_limits<uint64_t>::max()));
  put("t.i64", i(ValueType::I64, std::numeric_limits<int64_t>::min()));
  put("t.f32", Value{ValueType::F32, 0.15625});
  put("t.f64", Value{ValueType::F64, 1.0 / 3.0});
  put("t.bool", Value{ValueType::BOOL, true});
  put("t.string", s("héllo \n world"));
  put("t.empty_string", s(""));
  put("t.empty_array", arr(ValueType::I32, {}));
  put("t.u8_array", arr(ValueType::U8, {u(ValueType::U8, 0), u(ValueType::U8, 7)}));
  put("t.bool_array",
      arr(ValueType::BOOL, {Value{ValueType::BOOL, false}, Value{ValueType::BOOL, true}}));
  put("t.f64_array", arr(ValueType::F64, {Value{ValueType::F64, -2.5}}));
  put("t.nested", arr(ValueType::ARRAY, {arr(ValueType::STRING, {s("a"), s("bc")}),
                                         arr(ValueType::I64, {i(ValueType::I64, -1)}),
                                         arr(ValueType::ARRAY, {arr(ValueType::U16, {})})}));
  w.set_string("general.architecture", "test");
  expected["general.architecture"] = s("test");
  w.set_u32("t.set_u32", 7);
  expected["t.set_u32"] = u(ValueType::U32, 7);
  w.set_f32("t.set_f32", 0.5f);
  expected["t.set_f32"] = Value{ValueType::F32, 0.5};
  w.set_bool("t.set_bool", false);
  expected["t.set_bool"] = Value{ValueType::BOOL, false};
  w.set_string_array("t.strings", {"x", "", "yz"});
  expected["t.strings"] = arr(ValueType::STRING, {s("x"), s(""), s("yz")});
  w.set_f32_array("t.floats", {1.5f, -2.0f});
  expected["t.floats"] =
      arr(ValueType::F32, {Value{ValueType::F32, 1.5}, Value{ValueType::F32, -2.0}});
  w.set_i32_array("t.ints", {-1, 2});
  expected["t.ints"] = arr(ValueType::I32, {i(ValueType::I32, -1), i(ValueType::I32, 2)});
  // Setting a key again replaces it.
  w.set_u32("t.set_u32", 8);
  expected["t.set_u32"] = u(ValueType::U32, 8);

  std::map<std::string, Tensor> tensors = {
      {"a.f32", f32_tensor({3, 5}, 1.0f)},
      {"b.f16", half_tensor(DType::F16, {7}, 3.0f)},
      {"c.bf16", half_tensor(DType::BF16, {2, 3, 4}, -1.0f)},
      {"d.f32_4d", f32_tensor({2, 1, 3, 2}, -7.0f)},
  };
  for (const auto& [name, t] : tensors) w.add_tensor(name, t);

  std::string path = testing::temp_dir() + "/round.gguf";
  w.write(path);
  File f = File::open(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.metadata(), expected);
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    Tensor back = f.tensor(name);
    EXPECT_TRUE(same_bytes(back, t)) << name;
    EXPECT_EQ(f.find_tensor(name)->offset % 32, 0u);
    EXPECT_EQ(f.tensor_bytes(name).size(), t.nbytes());
  }
  EXPECT_EQ(f.tensor("c.bf16").shape(), Shape({2, 3, 4}));
  EXPECT_EQ(f.find_tensor("c.bf16")->ne, (std::vector<uint64_t>{4, 3, 2}));
  EXPECT_EQ(f.data_offset() % 32, 0u);
  // No temporary file is left beside the result.
  EXPECT_EQ(std::distance(fs::directory_iterator(fs::path(path).parent_path()), {}), 1);
}

TEST(GgufWriter, CustomAlignmentIsRecordedAndHonoured) {
  Writer w;
  w.set_alignment(64);
  w.add_tensor("a", f32_tensor({3}, 0));
  w.add_tensor("b", f32_tensor({5}, 1));
  std::string path = testing::temp_dir() + "/a64.gguf";
  w.write(path);
  File f = File::open(path);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.get_uint("general.alignment"), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.find_tensor("b")->offset, 64u);
  EXPECT_TRUE(same_bytes(f.tensor("b"), f32_tensor({5}, 1)));
}

TEST(GgufWriter, MisalignedDataIsCopiedNotReadInPlace) {
  // Alignment 1 places the f32 tensor at an odd address; tensor() must still work.
  Writer w;
  w.set_alignment(1);
  w.add_tensor("h", half_tensor(DType::F16, {3}, 1));
  w.add_tensor("f", f32_tensor({4}, 2));
  std::string path = testing::temp_dir() + "/a1.gguf";
  w.write(path);
  File f = File::open(path);
  EXPECT_EQ(f.find_tensor("f")->offset, 6u);
  Tensor t = f.tensor("f");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.bytes()) % 4, 0u);
  EXPECT_EQ(t.to_f32(), f32_tensor({4}, 2).to_f32());
}

TEST(GgufWriter, StreamsGeneratedTensors) {
  Writer w;
  const int64_t n = (5 << 20) + 3;  // more than one 4 MiB chunk
  size_t calls = 0;
  w.add_tensor("big", DType::F32, Shape{n}, [&](uint64_t offset, std::span<std::byte> chunk) {
    ++calls;
    ASSERT_EQ(offset % 4, 0u);
    ASSERT_EQ(chunk.size() % 4, 0u);
    auto* p = reinterpret_cast<float*>(chunk.data());
    for (size_t k = 0; k < chunk.size() / 4; ++k) p[k] = float((offset / 4 + k) % 1000);
  });
  std::string path = testing::temp_dir() + "/big.gguf";
  w.write(path);
  EXPECT_GE(calls, 2u);
  File f = File::open(path);
  Tensor t = f.tensor("big");
  ASSERT_EQ(t.numel(), n);
  for (int64_t k : {int64_t(0), int64_t(999), int64_t(1000), n / 2, n - 1})
    EXPECT_EQ(t.data<float>()[k], float(k % 1000)) << k;
}

TEST(GgufWriter, RejectsWhatCannotBeWritten) {
  Writer w;
  EXPECT_TRUE(contains(error_of([&] { w.set("k", u(ValueType::U8, 256)); }), "does not fit U8"));
  EXPECT_TRUE(contains(error_of([&] { w.set("k", i(ValueType::I16, 40000)); }), "does not fit"));
  EXPECT_TRUE(contains(error_of([&] {
                         w.set("k", Value{ValueType::STRING, uint64_t(1)});
                       }),
                       "STRING"));
  EXPECT_TRUE(contains(error_of([&] { w.set("k", arr(ValueType::U32, {s("x")})); }),
                       "array of U32 holds a STRING"));
  EXPECT_TRUE(contains(error_of([&] { w.set("", s("x")); }), "empty"));
  EXPECT_TRUE(contains(error_of([&] { w.set_alignment(48); }), "power of two"));
  EXPECT_TRUE(contains(
      error_of([&] { w.add_tensor("i", Tensor::from_i32({1}, std::vector<int32_t>{1})); }), "i32"));
  w.add_tensor("t", f32_tensor({2}, 0));
  EXPECT_TRUE(contains(error_of([&] { w.add_tensor("t", f32_tensor({2}, 0)); }), "duplicate"));
  EXPECT_TRUE(contains(error_of([&] { w.add_tensor(std::string(65, 'n'), f32_tensor({2}, 0)); }),
                       "longer than 64"));
  EXPECT_TRUE(contains(error_of([&] {
                         w.add_tensor("r5", f32_tensor({1, 1, 1, 1, 1}, 0));
                       }),
                       "rank 5"));
  EXPECT_TRUE(contains(error_of([&] { w.write(testing::temp_dir() + "/no/such/dir/x.gguf"); }),
                       "cannot create a temporary file"));
}

TEST(GgufWriter, RoundTripsEveryBlockType) {
  Writer w;
  std::vector<Tensor> written;
  for (DType t : kBlockDTypes) {
    const int64_t n = 2 * block_elems(t);
    std::vector<float> v(size_t(3 * n));
    for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.37f * float(i));
    written.push_back(Tensor::from_f32_as(t, Shape{3, n}, v));
    w.add_tensor(std::string(dtype_name(t)), written.back());
  }
  // Rows must be whole blocks, also for the streaming overload.
  EXPECT_TRUE(contains(error_of([&] {
                         w.add_tensor("bad", DType::Q8_0, Shape{2, 33}, [](uint64_t, auto) {});
                       }),
                       "rows must be whole 32-element blocks"));
  std::string path = testing::temp_dir() + "/blocks.gguf";
  w.write(path);
  File f = File::open(path);
  for (const Tensor& x : written) {
    const std::string name(dtype_name(x.dtype()));
    SCOPED_TRACE(name);
    Tensor y = f.tensor(name);
    EXPECT_EQ(y.dtype(), x.dtype());
    EXPECT_EQ(y.shape(), x.shape());
    EXPECT_EQ(y.nbytes(), 3 * row_bytes(x.dtype(), x.shape()[1]));
    EXPECT_EQ(f.find_tensor(name)->nbytes, y.nbytes());
    EXPECT_EQ(std::memcmp(y.bytes(), x.bytes(), x.nbytes()), 0);
    EXPECT_EQ(y.to_f32(), x.to_f32());
  }
}

// ---------------------------------------------------------------------------------------
// Opening

TEST(GgufFile, MissingFileAndDirectory) {
  EXPECT_TRUE(contains(error_of([] { File::open("/nonexistent/model.gguf"); }),
                       "/nonexistent/model.gguf: cannot open: no such file"));
  std::string dir = testing::temp_dir();
  EXPECT_TRUE(contains(error_of([&] { File::open(dir); }), dir + ": is a directory"));
}

TEST(GgufFile, RejectsWrongMagic) {
  Bytes b;
  b.raw({0x7f, 'E', 'L', 'F'}).u32(3).u64(0).u64(0);
  std::string m = parse_error(b);
  EXPECT_TRUE(contains(m, "x.gguf: not a GGUF file (magic 0x7f454c46"));
}

TEST(GgufFile, RejectsUnsupportedVersions) {
  EXPECT_TRUE(contains(parse_error(header(0, 0, 1)), "GGUF version 1 is not supported"));
  EXPECT_TRUE(contains(parse_error(header(0, 0, 4)), "GGUF version 4 is not supported"));
  EXPECT_TRUE(contains(parse_error(header(0, 0, 0x03000000)), "big-endian"));
  EXPECT_EQ(parse(header(0, 0, 2)).version(), 2u);
}

TEST(GgufFile, ReadsTheSharedModels) {
  File f = File::open(testing::shared_path("models/stories260K/stories260K.gguf"));
  EXPECT_EQ(f.tensors().size(), 48u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_array("tokenizer.ggml.tokens").size(), 512u);
  File v = File::open(testing::shared_path("vocab/ggml-vocab-llama-bpe.gguf"));
  EXPECT_EQ(v.tensors().size(), 0u);
  EXPECT_GT(v.get_array("tokenizer.ggml.merges").size(), 100000u);
}

// A small valid file: every prefix of it is damaged and must be refused. The last tensor
// ends exactly at the end of the file, so even cutting one byte is detectable.
TEST(GgufFile, EveryTruncationIsAnError) {
  Writer w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 1);
  w.set_f32("x.f", 1.5f);
  w.set_bool("x.b", true);
  w.set_string_array("tokenizer.ggml.tokens", {"<unk>", "a", "bc"});
  w.set("x.nested", arr(ValueType::ARRAY, {arr(ValueType::I8, {i(ValueType::I8, -3)})}));
  w.add_tensor("first", half_tensor(DType::F16, {3, 2}, 1));
  w.add_tensor("second", f32_tensor({8}, 5));  // 32 bytes: no padding after it
  std::string path = testing::temp_dir() + "/small.gguf";
  w.write(path);
  std::vector<uint8_t> full = read_file(path);
  ASSERT_NO_THROW(File::from_memory(nullptr, full.data(), full.size(), "small.gguf"));
  for (size_t n = 0; n < full.size(); ++n) {
    // A copy of exactly n bytes, so reading past it is caught by the sanitizers.
    std::vector<uint8_t> cut(full.begin(), full.begin() + long(n));
    try {
      File::from_memory(nullptr, cut.data(), cut.size(), "small.gguf");
      ADD_FAILURE() << "prefix of " << n << " bytes was accepted";
    } catch (const Error& e) {
      std::string m = e.what();
      EXPECT_EQ(m.rfind("small.gguf: ", 0), 0u) << m;
      EXPECT_TRUE(m.find("truncated") != std::string::npos ||
                  m.find("past the end") != std::string::npos)
          << n << ": " << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  }
}

TEST(GgufFile, TruncationMessageSaysWhereAndWhat) {
  Bytes b = header(2, 0);
  tensor_info(b, "blk.0.attn_q.weight", {4}, 0, 0);
  b.str("blk.0.attn_k.weight").u32(1);  // cut inside the second tensor info
  std::string m = parse_error(b);
  EXPECT_TRUE(contains(m, "x.gguf: truncated: tensor 'blk.0.attn_k.weight' (tensor info 2 of 2)"));
  EXPECT_TRUE(contains(m, "needs 8 bytes at offset"));
}

TEST(GgufFile, RejectsTensorDataPastTheEnd) {
  Bytes b = header(1, 0);
  tensor_info(b, "w", {16}, 0, 0);
  b.pad_to(32).zeros(60);  // 64 needed
  EXPECT_TRUE(contains(parse_error(b), "tensor 'w' data (64 bytes at file offset"));
  EXPECT_TRUE(contains(parse_error(b), "extends past the end of the file"));

  Bytes far = header(1, 0);
  tensor_info(far, "w", {1}, 0, std::numeric_limits<uint64_t>::max() - 31);
  far.pad_to(32).zeros(64);
  EXPECT_TRUE(contains(parse_error(far), "past the end"));
}

TEST(GgufFile, RejectsAbsurdStringLength) {
  Bytes b = header(0, 1);
  b.u64(std::numeric_limits<uint64_t>::max()).raw({'k'}).zeros(16);
  EXPECT_TRUE(contains(parse_error(b), "string length 18446744073709551615"));
  EXPECT_TRUE(contains(parse_error(b), "impossibly large"));

  Bytes v = header(0, 1);
  v.str("k").u32(uint32_t(ValueType::STRING)).u64(uint64_t(1) << 62).raw({'a', 'b'});
  EXPECT_TRUE(contains(parse_error(v), "metadata 1 of 1 'k': value string length"));
}

TEST(GgufFile, RejectsAbsurdArrayCount) {
  Bytes b = header(0, 1);
  b.str("k").u32(uint32_t(ValueType::ARRAY)).u32(uint32_t(ValueType::U64)).u64(uint64_t(1) << 61);
  b.zeros(16);
  std::string m = parse_error(b);
  EXPECT_TRUE(contains(m, "array of U64 count 2305843009213693952"));
  EXPECT_TRUE(contains(m, "impossibly large"));
  // A count that only overshoots the rest of the file is a truncation.
  Bytes t = header(0, 1);
  t.str("k").u32(uint32_t(ValueType::ARRAY)).u32(uint32_t(ValueType::U8)).u64(40).zeros(20);
  EXPECT_TRUE(contains(parse_error(t), "truncated: metadata 1 of 1 'k': 40 array of U8 need"));
}

TEST(GgufFile, RejectsMoreMetadataValuesThanItWouldHold) {
  // Each parsed value costs ~50 bytes of memory against 1 byte of file: capped.
  Bytes b = header(0, 1);
  const uint64_t n = (uint64_t(1) << 24) + 1;
  b.str("k").u32(uint32_t(ValueType::ARRAY)).u32(uint32_t(ValueType::U8)).u64(n).zeros(n);
  EXPECT_TRUE(contains(parse_error(b), "would take the metadata past 16777216 values"));
}

TEST(GgufFile, RejectsAbsurdCounts) {
  EXPECT_TRUE(contains(parse_error(header(uint64_t(1) << 60, 0)), "tensor infos count"));
  EXPECT_TRUE(contains(parse_error(header(0, ~uint64_t(0))), "metadata entries count"));
}

TEST(GgufFile, RejectsBadNDims) {
  for (uint32_t n : {0u, 5u, 0xffffffffu}) {
    Bytes b = header(1, 0);
    b.str("w").u32(n).zeros(64);
    EXPECT_TRUE(contains(parse_error(b), "tensor 'w' has n_dims " + std::to_string(n)));
  }
}

TEST(GgufFile, RejectsZeroAndOverflowingDims) {
  Bytes zero = header(1, 0);
  tensor_info(zero, "w", {4, 0}, 0, 0);
  zero.pad_to(32).zeros(32);
  EXPECT_TRUE(contains(parse_error(zero), "tensor 'w' has dimension ne[1] = 0"));

  Bytes big = header(1, 0);
  tensor_info(big, "w", {uint64_t(1) << 40, uint64_t(1) << 40}, 0, 0);
  big.pad_to(32).zeros(32);
  EXPECT_TRUE(contains(parse_error(big), "element count that overflows"));

  // Fits int64 as a count but not as bytes.
  Bytes bytes = header(1, 0);
  tensor_info(bytes, "w", {uint64_t(1) << 62}, 28, 0);
  bytes.pad_to(32).zeros(32);
  EXPECT_TRUE(contains(parse_error(bytes), "byte size overflows"));

  Bytes huge = header(1, 0);
  tensor_info(huge, "w", {uint64_t(1) << 30, 1024}, 0, 0);
  huge.pad_to(32).zeros(32);
  EXPECT_TRUE(contains(parse_error(huge), "past the end"));
}

TEST(GgufFile, RejectsUnknownAndRemovedTensorTypes) {
  Bytes b = header(1, 0);
  tensor_info(b, "w", {32}, 1000, 0);
  b.pad_to(32).zeros(256);
  EXPECT_TRUE(contains(parse_error(b), "tensor 'w' has unknown ggml type id 1000"));

  Bytes r = header(1, 0);
  tensor_info(r, "w", {32}, 31, 0);
  r.pad_to(32).zeros(256);
  EXPECT_TRUE(contains(parse_error(r), "type Q4_0_4_4 (id 31), which ggml no longer stores"));

  Bytes blk = header(1, 0);
  tensor_info(blk, "w", {33}, 2, 0);
  blk.pad_to(32).zeros(256);
  EXPECT_TRUE(contains(parse_error(blk), "not a multiple of the 32-element blocks of Q4_0"));
}

TEST(GgufFile, BlockTensorsAreReadOtherQuantizedTypesNamed) {
  Bytes b = header(3, 0);
  tensor_info(b, "blk.0.attn_q.weight", {64, 2}, 2, 0);  // Q4_0: 2 blocks per row, 72 bytes
  tensor_info(b, "iq", {64, 2}, 20, 96);                 // IQ4_NL: the same geometry
  tensor_info(b, "norm", {4}, 0, 192);
  b.pad_to(32).zeros(192).raw({0, 0, 0x80, 0x3f}).zeros(12);
  File f = parse(b);
  ASSERT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(f.find_tensor("blk.0.attn_q.weight")->nbytes, 72u);
  EXPECT_EQ(tensor_type_name(2), "Q4_0");
  EXPECT_TRUE(tensor_type_readable(2));
  Tensor q = f.tensor("blk.0.attn_q.weight");
  EXPECT_EQ(q.dtype(), DType::Q4_0);
  EXPECT_EQ(q.shape(), (Shape{2, 64}));
  EXPECT_EQ(q.nbytes(), 72u);
  EXPECT_FALSE(tensor_type_readable(20));
  EXPECT_EQ(error_of([&] { f.tensor("iq"); }),
            "x.gguf: tensor iq has type IQ4_NL (id 20), which TapML cannot read yet");
  EXPECT_EQ(f.tensor_bytes("iq").size(), 72u);
  EXPECT_EQ(f.tensor("norm").get_f32(0), 1.0f);
  EXPECT_TRUE(contains(error_of([&] { f.tensor("nope"); }), "no tensor named 'nope'"));
}

TEST(GgufFile, RejectsMisalignedAndOverlappingTensors) {
  Bytes mis = header(1, 0);
  tensor_info(mis, "w", {4}, 0, 8);
  mis.pad_to(32).zeros(64);
  EXPECT_TRUE(contains(parse_error(mis),
                       "tensor 'w' data offset 8 is not a multiple of the "
                       "alignment 32"));

  Bytes ov = header(2, 0);
  tensor_info(ov, "a", {16}, 0, 0);
  tensor_info(ov, "b", {8}, 0, 32);
  ov.pad_to(32).zeros(128);
  EXPECT_TRUE(contains(parse_error(ov), "tensors 'a' and 'b' overlap"));
}

TEST(GgufFile, RejectsDuplicates) {
  Bytes kv = header(0, 2);
  kv.str("k").u32(uint32_t(ValueType::U8)).put(uint8_t(1));
  kv.str("k").u32(uint32_t(ValueType::U8)).put(uint8_t(2));
  EXPECT_TRUE(contains(parse_error(kv), "duplicate metadata key 'k' (metadata 2 of 2)"));

  Bytes t = header(2, 0);
  tensor_info(t, "w", {8}, 0, 0);
  tensor_info(t, "w", {8}, 0, 32);
  t.pad_to(32).zeros(64);
  EXPECT_TRUE(contains(parse_error(t), "duplicate tensor name 'w'"));
}

TEST(GgufFile, RejectsBadAlignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    Bytes b = header(0, 1);
    b.str("general.alignment").u32(uint32_t(ValueType::U32)).u32(a);
    EXPECT_TRUE(contains(parse_error(b),
                         "general.alignment " + std::to_string(a) + " is not a power of two"));
  }
  Bytes str = header(0, 1);
  str.str("general.alignment").u32(uint32_t(ValueType::STRING)).str("32");
  EXPECT_TRUE(contains(parse_error(str), "general.alignment is STRING, expected U32"));
}

TEST(GgufFile, RejectsMalformedValues) {
  Bytes type = header(0, 1);
  type.str("k").u32(13).u64(0);
  EXPECT_TRUE(contains(parse_error(type), "unknown value type 13"));

  Bytes boolean = header(0, 1);
  boolean.str("k").u32(uint32_t(ValueType::BOOL)).put(uint8_t(2));
  EXPECT_TRUE(contains(parse_error(boolean), "bool value 2 at offset"));

  Bytes empty = header(0, 1);
  empty.str("").u32(uint32_t(ValueType::U8)).put(uint8_t(2)).zeros(8);
  EXPECT_TRUE(contains(parse_error(empty), "empty key"));

  Bytes deep = header(0, 1);
  deep.str("k").u32(uint32_t(ValueType::ARRAY));
  for (int d = 0; d < 20; ++d) deep.u32(uint32_t(ValueType::ARRAY)).u64(1);
  deep.zeros(64);
  EXPECT_TRUE(contains(parse_error(deep), "arrays nested more than 8 deep"));

  Bytes name = header(1, 0);
  tensor_info(name, std::string(65, 'n'), {1}, 0, 0);
  name.pad_to(32).zeros(32);
  EXPECT_TRUE(contains(parse_error(name), "longer than the 64-byte limit"));

  // Control bytes in a key stay out of the (one-line) message.
  Bytes ctrl = header(0, 2);
  ctrl.str("a\nb").u32(uint32_t(ValueType::U8)).put(uint8_t(1));
  ctrl.str("a\nb").u32(uint32_t(ValueType::U8)).put(uint8_t(1));
  std::string m = parse_error(ctrl);
  EXPECT_TRUE(contains(m, "'a\\x0ab'"));
  EXPECT_EQ(m.find('\n'), std::string::npos);
}

TEST(GgufFile, TypedGetters) {
  Bytes b = header(0, 6);
  b.str("u").u32(uint32_t(ValueType::U16)).put(uint16_t(7));
  b.str("neg").u32(uint32_t(ValueType::I32)).put(int32_t(-3));
  b.str("big").u32(uint32_t(ValueType::U64)).u64(~uint64_t(0));
  b.str("f").u32(uint32_t(ValueType::F32)).put(0.25f);
  b.str("s").u32(uint32_t(ValueType::STRING)).str("hi");
  b.str("b").u32(uint32_t(ValueType::BOOL)).put(uint8_t(1));
  File f = parse(b);
  EXPECT_EQ(f.get_uint("u"), 7u);
  EXPECT_EQ(f.get_int("u"), 7);
  EXPECT_EQ(f.get_int("neg"), -3);
  EXPECT_EQ(f.get_float("f"), 0.25);
  EXPECT_EQ(f.get_float("u"), 7.0);
  EXPECT_EQ(f.get_string("s"), "hi");
  EXPECT_TRUE(f.get_bool("b"));
  EXPECT_EQ(f.get_uint_or("absent", 9), 9u);
  EXPECT_EQ(f.get_float_or("absent", 0.5), 0.5);
  EXPECT_EQ(f.get_string_or("absent", "d"), "d");
  EXPECT_FALSE(f.get_bool_or("absent", false));
  EXPECT_TRUE(
      contains(error_of([&] { f.get_uint("neg"); }), "'neg' is -3, expected a non-negative"));
  EXPECT_TRUE(contains(error_of([&] { f.get_int("big"); }), "too large for int64"));
  EXPECT_TRUE(contains(error_of([&] { f.get_uint("s"); }),
                       "x.gguf: metadata 's' is STRING, expected an unsigned integer"));
  EXPECT_TRUE(contains(error_of([&] { f.get_string("u"); }), "'u' is U16, expected STRING"));
  EXPECT_TRUE(contains(error_of([&] { f.get_array("u"); }), "expected ARRAY"));
  EXPECT_TRUE(contains(error_of([&] { f.get_bool("f"); }), "expected BOOL"));
  EXPECT_TRUE(contains(error_of([&] { f.get_uint_or("s", 1); }), "expected an unsigned"));
  EXPECT_TRUE(contains(error_of([&] { f.get_string("absent"); }), "'absent' is missing"));
}

TEST(GgufFile, DescribeIsOneShortLine) {
  Value v = arr(ValueType::STRING, {s("a"), s("b\n"), s("c")});
  EXPECT_EQ(describe(v, 2), "[STRING x 3: 'a', 'b\\x0a', ...]");
  EXPECT_EQ(describe(Value{ValueType::F32, 0.5}), "0.5");
  EXPECT_EQ(describe(i(ValueType::I8, -1)), "-1");
  EXPECT_EQ(value_type_name(ValueType(13)), "type 13");
}

TEST(GgufFile, TensorsKeepTheMappingAlive) {
  Writer w;
  w.add_tensor("t", f32_tensor({4}, 3));
  std::string path = testing::temp_dir() + "/alive.gguf";
  w.write(path);
  Tensor t;
  {
    File f = File::open(path);
    t = f.tensor("t");
  }
  fs::remove(path);
  EXPECT_EQ(t.to_f32(), f32_tensor({4}, 3).to_f32());
}

}  // namespace
}  // namespace tapml::gguf

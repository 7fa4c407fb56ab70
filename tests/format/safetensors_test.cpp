// safetensors::File (mapped, borrowing) and write/read: round trips, and one test per
// defect a hostile or damaged header can have. Defective files are written from raw header
// text so each test shows exactly what is wrong with its input.
#include "format/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "support/errors.h"
#include "support/shared.h"

namespace tapml::safetensors {
namespace {

using testing::contains;
using testing::error_of;

namespace fs = std::filesystem;

// A file of the format: length, header text as given, then data.
std::string file_bytes(const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + header + data;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(bool(f)) << path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// The address ranges at which `path` is mapped into this process now.
std::vector<std::pair<uintptr_t, uintptr_t>> mappings_of(const std::string& path) {
  std::vector<std::pair<uintptr_t, uintptr_t>> out;
  std::ifstream maps("/proc/self/maps");
  std::string canonical = fs::canonical(path).string();
  for (std::string line; std::getline(maps, line);) {
    if (line.size() < canonical.size() ||
        line.compare(line.size() - canonical.size(), canonical.size(), canonical) != 0)
      continue;
    std::istringstream in(line);
    uintptr_t begin = 0, end = 0;
    char dash;
    in >> std::hex >> begin >> dash >> end;
    out.emplace_back(begin, end);
  }
  return out;
}

bool inside_a_mapping(const void* p, const std::string& path) {
  auto at = reinterpret_cast<uintptr_t>(p);
  for (auto [begin, end] : mappings_of(path))
    if (begin <= at && at < end) return true;
  return false;
}

Tensor ramp(DType dt, Shape shape, float start) {
  Tensor t(dt, std::move(shape));
  for (int64_t k = 0; k < t.numel(); ++k) {
    float x = start + float(k) * 0.5f;
    switch (dt) {
      case DType::F32:
        t.mutable_data<float>()[k] = x;
        break;
      case DType::F16:
        t.mutable_data<uint16_t>()[k] = f32_to_f16(x);
        break;
      case DType::BF16:
        t.mutable_data<uint16_t>()[k] = f32_to_bf16(x);
        break;
      case DType::I32:
        t.mutable_data<int32_t>()[k] = int32_t(k) - 3;
        break;
      default:
        break;  // safetensors holds no block types
    }
  }
  return t;
}

bool same(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::memcmp(a.bytes(), b.bytes(), a.nbytes()) == 0;
}

std::vector<Entry> sample_entries() {
  return {{"embed", ramp(DType::F32, {3, 4}, 1)},   {"norm", ramp(DType::F16, {4}, -2)},
          {"proj", ramp(DType::BF16, {2, 3}, 0.5)}, {"ids", ramp(DType::I32, {5}, 0)},
          {"scalar", ramp(DType::F32, {}, 7)},      {"empty", Tensor(DType::F32, {0, 3})}};
}

// ---------------------------------------------------------------------------------------
// Round trips

TEST(SafetensorsFile, RoundTripBorrowsTheMappedBytes) {
  std::string path = testing::temp_dir() + "/good.safetensors";
  std::vector<Entry> entries = sample_entries();
  write(path, entries, {{"format", "pt"}});

  Tensor embed;
  {
    File f = File::open(path);
    EXPECT_EQ(f.path(), path);
    EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
    ASSERT_EQ(f.entries().size(), entries.size());
    uint64_t at = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
      const TensorEntry& e = f.entries()[i];
      SCOPED_TRACE(e.name);
      EXPECT_EQ(e.name, entries[i].name);  // written in this order, listed in byte order
      EXPECT_EQ(e.shape, entries[i].tensor.shape().dims());
      EXPECT_EQ(e.begin, at);
      at = e.end;
      ASSERT_EQ(f.find(e.name), &e);
      Tensor t = f.tensor(e.name);
      EXPECT_TRUE(same(t, entries[i].tensor));
      if (t.nbytes() > 0) {
        EXPECT_TRUE(inside_a_mapping(t.bytes(), path)) << "not borrowed";
      }
      EXPECT_THROW(t.mutable_bytes(), Error);  // a read-only view, not a copy
    }
    EXPECT_EQ(f.entries()[2].dtype, "BF16");
    EXPECT_EQ(f.find("nothing"), nullptr);
    EXPECT_TRUE(contains(error_of([&] { f.tensor("nothing"); }), "no tensor named 'nothing'"));
    embed = f.tensor("embed");
  }
  // The tensor keeps the file mapped after the File is gone, and only until it goes too.
  EXPECT_TRUE(inside_a_mapping(embed.bytes(), path));
  EXPECT_TRUE(same(embed, entries[0].tensor));
  embed = Tensor();
  EXPECT_TRUE(mappings_of(path).empty());
}

TEST(SafetensorsFile, FromMemoryBorrowsTheBuffer) {
  std::string path = testing::temp_dir() + "/mem.safetensors";
  std::vector<Entry> entries = sample_entries();
  write(path, entries, {});
  std::string bytes = read_bytes(path);
  auto buffer = std::make_shared<std::string>(bytes);
  const auto* base = reinterpret_cast<const uint8_t*>(buffer->data());
  File f = File::from_memory(buffer, base, buffer->size(), "memory");
  Tensor t = f.tensor("proj");
  EXPECT_TRUE(same(t, entries[2].tensor));
  EXPECT_GE(reinterpret_cast<const uint8_t*>(t.bytes()), base);
  EXPECT_LE(reinterpret_cast<const uint8_t*>(t.bytes()) + t.nbytes(), base + buffer->size());
  EXPECT_TRUE(contains(error_of([] { File::from_memory(nullptr, nullptr, 0, "nothing"); }),
                       "nothing: not a safetensors file (0 bytes)"));
}

TEST(SafetensorsFile, ReadStillCopies) {
  std::string path = testing::temp_dir() + "/copy.safetensors";
  std::vector<Entry> entries = sample_entries();
  write(path, entries, {{"a", "b"}});
  Contents c = read(path);
  ASSERT_EQ(c.tensors.size(), entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(c.tensors[i].name, entries[i].name);
    EXPECT_TRUE(same(c.tensors[i].tensor, entries[i].tensor));
    EXPECT_NO_THROW(c.tensors[i].tensor.mutable_bytes());  // owns its bytes
  }
  EXPECT_TRUE(mappings_of(path).empty());
  EXPECT_EQ(c.metadata.at("a"), "b");
}

TEST(SafetensorsFile, MisalignedDataIsCopiedNotReadInPlace) {
  // A 9-byte header (the format recommends padding but does not require it) puts the data
  // at offset 17, where no f32 can be read in place.
  std::string path = testing::temp_dir() + "/odd.safetensors";
  float values[2] = {1.5f, -2.25f};
  std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  while ((8 + header.size()) % 4 != 1) header += ' ';
  ASSERT_NE((8 + header.size()) % 4, 0u);
  write_bytes(path, file_bytes(header, std::string(reinterpret_cast<char*>(values), 8)));
  Tensor t = File::open(path).tensor("x");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.bytes()) % 4, 0u);
  EXPECT_EQ(t.to_f32(), (std::vector<float>{1.5f, -2.25f}));
}

// ---------------------------------------------------------------------------------------
// Dtypes TapML cannot compute with

TEST(SafetensorsFile, UnusedUnsupportedDtypesLoad) {
  std::string path = testing::temp_dir() + "/mixed.safetensors";
  // Buffers of the kinds real checkpoints carry: position ids (I64), causal masks (BOOL),
  // fp8 weights with their scales, doubles, bytes, packed fp4.
  std::string header = R"({"__metadata__":{"format":"pt"},)"
                       R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("pos":{"dtype":"I64","shape":[2],"data_offsets":[8,24]},)"
                       R"("mask":{"dtype":"BOOL","shape":[2,2],"data_offsets":[24,28]},)"
                       R"("q":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[28,32]},)"
                       R"("d":{"dtype":"F64","shape":[1],"data_offsets":[32,40]},)"
                       R"("u":{"dtype":"U8","shape":[3],"data_offsets":[40,43]},)"
                       R"("f4":{"dtype":"F4","shape":[2],"data_offsets":[43,44]}})";
  write_bytes(path, file_bytes(header, std::string(44, '\0')));
  File f = File::open(path);
  ASSERT_EQ(f.entries().size(), 7u);
  EXPECT_EQ(f.find("pos")->dtype, "I64");
  EXPECT_EQ(f.find("pos")->shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(f.find("f4")->end, 44u);
  EXPECT_EQ(f.tensor("w").numel(), 2);
  EXPECT_TRUE(readable_dtype("BF16"));
  EXPECT_FALSE(readable_dtype("I64"));
  for (const char* name : {"pos", "mask", "q", "d", "u", "f4"}) {
    std::string e = error_of([&] { f.tensor(name); });
    EXPECT_TRUE(contains(e, path + ": tensor '" + name + "' has dtype " + f.find(name)->dtype +
                                "; TapML reads F32, F16, BF16 and I32"));
  }
  // Reading every tensor needs every dtype.
  EXPECT_TRUE(contains(error_of([&] { read(path); }), "tensor 'pos' has dtype I64"));
}

// A tensor of more dimensions than TapML's shapes hold is listed but refused when read, with
// the file, the tensor and the reason.
TEST(SafetensorsFile, TooManyDimensionsAreRefusedWhenRead) {
  std::string path = testing::temp_dir() + "/rank9.safetensors";
  write_bytes(path, file_bytes(R"({"x":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,1],)"
                               R"("data_offsets":[0,4]}})",
                               std::string(4, '\0')));
  File f = File::open(path);
  ASSERT_EQ(f.entries().size(), 1u);
  std::string e = error_of([&] { f.tensor("x"); });
  EXPECT_TRUE(contains(e, "9 dimensions")) << e;
  EXPECT_TRUE(contains(e, path)) << e;
}

// ---------------------------------------------------------------------------------------
// Hostile headers: each gives one line naming the file and what is wrong.

class HostileHeader : public ::testing::Test {
 protected:
  std::string dir = testing::temp_dir();
  int n = 0;

  std::string error_for_bytes(const std::string& bytes) {
    std::string path = dir + "/h" + std::to_string(n++) + ".safetensors";
    write_bytes(path, bytes);
    std::string e = error_of([&] { File::open(path); });
    EXPECT_EQ(e.rfind(path + ": ", 0), 0u) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    return e;
  }
  std::string error_for(const std::string& header, size_t data_bytes) {
    return error_for_bytes(file_bytes(header, std::string(data_bytes, '\0')));
  }
  // One F32 entry with the given fields (JSON text) as the whole header.
  std::string error_for_entry(const std::string& fields, size_t data_bytes = 4) {
    return error_for("{\"x\":{" + fields + "}}", data_bytes);
  }
};

TEST_F(HostileHeader, LengthPastTheFileOrAbsurd) {
  EXPECT_TRUE(contains(error_for_bytes("abc"), "not a safetensors file (3 bytes)"));
  std::string e = error_for_bytes(file_bytes("{}", "").substr(0, 8) + "{");
  EXPECT_TRUE(contains(e, "header of 2 bytes runs past the end of the 9-byte file"));
  uint64_t huge = uint64_t(1) << 62;
  std::string bytes(reinterpret_cast<const char*>(&huge), 8);
  EXPECT_TRUE(
      contains(error_for_bytes(bytes + "{}"), "header length 4611686018427387904 is absurd"));
  // Over the 100 MB limit yet inside the file: a sparse file of 100 MB costs no disk.
  std::string path = dir + "/big.safetensors";
  uint64_t len = 100'000'001;
  write_bytes(path, std::string(reinterpret_cast<const char*>(&len), 8) + "{");
  fs::resize_file(path, 8 + len + 16);
  EXPECT_TRUE(contains(error_of([&] { File::open(path); }),
                       path + ": header of 100000001 bytes is over the 100000000-byte limit"));
}

TEST_F(HostileHeader, NotAJsonObject) {
  EXPECT_TRUE(contains(error_for("[1,2]", 0), "header is not a JSON object"));
  EXPECT_TRUE(contains(error_for("", 0), "header is not a JSON object"));
  EXPECT_TRUE(contains(error_for("{\"x\": nope}", 0), "header is not valid JSON: "));
  EXPECT_TRUE(contains(error_for("{} {}", 0), "header is not valid JSON"));
  EXPECT_TRUE(contains(error_for("{\"x\":\"\xff\"}", 0), "header is not valid JSON"));
  // Nesting no real header has is refused before anything walks it.
  EXPECT_TRUE(
      contains(error_for("{\"x\":" + std::string(100, '[') + std::string(100, ']') + "}", 0),
               "header nests deeper than 16 levels"));
}

TEST_F(HostileHeader, EntriesOfTheWrongShape) {
  EXPECT_TRUE(contains(error_for("{\"x\":5}", 0), "tensor 'x' is 5, not an object"));
  EXPECT_TRUE(contains(error_for("{\"x\":[1]}", 0), "tensor 'x' is an array, not an object"));
  EXPECT_TRUE(
      contains(error_for_entry(R"("shape":[1],"data_offsets":[0,4])"), "tensor 'x' lacks 'dtype'"));
  EXPECT_TRUE(contains(error_for_entry(R"("dtype":"F32","data_offsets":[0,4])"), "lacks 'shape'"));
  EXPECT_TRUE(contains(error_for_entry(R"("dtype":"F32","shape":[1])"), "lacks 'data_offsets'"));
  EXPECT_TRUE(contains(error_for_entry(R"("dtype":32,"shape":[1],"data_offsets":[0,4])"),
                       "tensor 'x' has dtype 32, not a string"));
  EXPECT_TRUE(contains(error_for_entry(R"("dtype":"Q9","shape":[1],"data_offsets":[0,4])"),
                       "tensor 'x' has dtype 'Q9', which safetensors lacks"));
  EXPECT_TRUE(contains(error_for_entry(R"("dtype":"F32","shape":"1","data_offsets":[0,4])"),
                       "has shape \"1\", not an array"));
  for (const char* offsets : {"[0]", "[0,4,8]", "[0,\"4\"]", "[-4,0]", "{}", "[0,4.0]"})
    EXPECT_TRUE(contains(
        error_for_entry(R"("dtype":"F32","shape":[1],"data_offsets":)" + std::string(offsets)),
        "not two non-negative integers"))
        << offsets;
}

TEST_F(HostileHeader, BadDimensions) {
  for (const char* dim : {"-1", "1.5", "\"2\"", "null", "[1]", "1e2"})
    EXPECT_TRUE(contains(
        error_for_entry(R"("dtype":"F32","data_offsets":[0,4],"shape":[)" + std::string(dim) + "]"),
        "tensor 'x' has a bad dimension"))
        << dim;
  // Element counts that overflow, also behind a zero dimension.
  for (const char* shape : {"[4294967296,4294967296]", "[18446744073709551615]",
                            "[0,4294967296,4294967296]", "[72057594037927937]"})
    EXPECT_TRUE(contains(
        error_for_entry(R"("dtype":"F32","data_offsets":[0,4],"shape":)" + std::string(shape)),
        "impossibly large shape"))
        << shape;
}

TEST_F(HostileHeader, OffsetsAndSizes) {
  EXPECT_TRUE(contains(error_for_entry(R"("dtype":"F32","shape":[2],"data_offsets":[0,8])"),
                       "tensor 'x' has data_offsets [0, 8] outside the 4 data bytes"));
  EXPECT_TRUE(contains(error_for_entry(R"("dtype":"F32","shape":[0],"data_offsets":[4,0])"),
                       "data_offsets [4, 0] that end before they begin"));
  EXPECT_TRUE(contains(error_for_entry(R"("dtype":"F32","shape":[3],"data_offsets":[0,4])"),
                       "tensor 'x' holds 4 bytes but F32 [3] needs 12"));
  EXPECT_TRUE(contains(error_for_entry(R"("dtype":"F4","shape":[3],"data_offsets":[0,2])", 2),
                       "3 F4 elements, which do not fill whole bytes"));
  EXPECT_TRUE(contains(error_for(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                 R"("y":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                                 8),
                       "tensor 'y' overlaps tensor 'x'"));
  // An empty tensor inside another one's bytes overlaps it too.
  EXPECT_TRUE(contains(error_for(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                 R"("e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})",
                                 8),
                       "tensor 'e' overlaps tensor 'x'"));
  EXPECT_TRUE(contains(error_for_entry(R"("dtype":"F32","shape":[1],"data_offsets":[4,8])", 8),
                       "a hole of 4 bytes before tensor 'x'"));
  EXPECT_TRUE(contains(error_for_entry(R"("dtype":"F32","shape":[1],"data_offsets":[0,4])", 6),
                       "2 bytes after the last tensor"));
}

TEST_F(HostileHeader, DuplicateKeys) {
  // nlohmann would keep the second silently; the format disallows it.
  EXPECT_TRUE(contains(error_for(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                 R"("x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                 8),
                       "header repeats the key 'x'"));
  EXPECT_TRUE(
      contains(error_for_entry(R"("dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4])"),
               "header repeats the key 'dtype' in 'x'"));
  EXPECT_TRUE(contains(error_for(R"({"__metadata__":{"a":"1","a":"2"}})", 0),
                       "header repeats the key 'a' in '__metadata__'"));
}

TEST_F(HostileHeader, Metadata) {
  EXPECT_TRUE(contains(error_for(R"({"__metadata__":{"format":5}})", 0),
                       "__metadata__ value 'format' is 5, not a string"));
  EXPECT_TRUE(contains(error_for(R"({"__metadata__":{"nested":{"a":"b"}}})", 0),
                       "__metadata__ value 'nested' is an object, not a string"));
  EXPECT_TRUE(
      contains(error_for(R"({"__metadata__":"pt"})", 0), "__metadata__ is \"pt\", not an object"));
}

TEST_F(HostileHeader, NamesStayOnOneLine) {
  std::string e = error_for(R"({"a\nb\u0001'":7})", 0);
  EXPECT_TRUE(contains(e, "tensor 'a\\x0ab\\x01\\'' is 7, not an object"));
  e = error_for("{\"" + std::string(500, 'n') + "\":7}", 0);
  EXPECT_TRUE(contains(e, std::string(120, 'n') + "...'"));
  EXPECT_LT(e.size(), 300u);
}

TEST(SafetensorsFile, EmptyAndZeroRankTensorsAreValid) {
  std::string dir = testing::temp_dir();
  write_bytes(dir + "/none.safetensors", file_bytes("{}      ", ""));
  EXPECT_TRUE(File::open(dir + "/none.safetensors").entries().empty());
  write_bytes(dir + "/edge.safetensors",
              file_bytes(R"({"s":{"dtype":"I32","shape":[],"data_offsets":[0,4]},)"
                         R"("e":{"dtype":"BF16","shape":[2,0],"data_offsets":[4,4]},)"
                         R"("f":{"dtype":"F16","shape":[0],"data_offsets":[4,4]}})",
                         std::string("\x07\0\0\0", 4)));
  File f = File::open(dir + "/edge.safetensors");
  EXPECT_EQ(f.tensor("s").data<int32_t>()[0], 7);
  EXPECT_EQ(f.tensor("e").numel(), 0);
  EXPECT_EQ(f.tensor("f").shape(), Shape{0});
}

TEST(SafetensorsFile, MissingFileAndDirectory) {
  std::string dir = testing::temp_dir();
  EXPECT_TRUE(contains(error_of([&] { File::open(dir + "/none"); }), "no such file"));
  EXPECT_TRUE(contains(error_of([&] { File::open(dir); }), "is a directory"));
}

}  // namespace
}  // namespace tapml::safetensors

#include "format/gguf.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "core/quant.h"

namespace tapml::gguf {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader copies little-endian fields straight into host integers");

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr uint64_t kMaxTensorName = 64;  // the specification's limit (GGML_MAX_NAME)
constexpr uint64_t kMaxKey = 65535;      // the specification's limit for keys
constexpr int kMaxArrayDepth = 8;        // real files nest at most 2 deep
// Counts and lengths that would need more bytes than this are called corrupt rather than
// truncated: no file is that large (256 TiB).
constexpr uint64_t kImpossibleBytes = uint64_t(1) << 48;
// A parsed value takes ~50 bytes of memory however few it took in the file, so the total is
// capped to keep a hostile file from costing 50x its size. Real files hold well under a
// million (the largest vocabularies: ~300k tokens and merges).
constexpr uint64_t kMaxValues = uint64_t(1) << 24;

// Every ggml type id the GGUF specification has named, with its block geometry so the
// directory can be bounds-checked even for types TapML cannot compute with. A block of 0
// marks ids that ggml has removed from GGUF files.
struct GgmlType {
  uint32_t id;
  const char* name;
  uint32_t block;        // elements per block
  uint32_t block_bytes;  // bytes per block
};
constexpr GgmlType kGgmlTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {4, "Q4_2", 0, 0},        {5, "Q4_3", 0, 0},
    {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},
    {9, "Q8_1", 32, 36},      {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},
    {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},   {14, "Q6_K", 256, 210},
    {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},   {20, "IQ4_NL", 32, 18},
    {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},   {23, "IQ4_XS", 256, 136},
    {24, "I8", 1, 1},         {25, "I16", 1, 2},        {26, "I32", 1, 4},
    {27, "I64", 1, 8},        {28, "F64", 1, 8},        {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},       {31, "Q4_0_4_4", 0, 0},   {32, "Q4_0_4_8", 0, 0},
    {33, "Q4_0_8_8", 0, 0},   {34, "TQ1_0", 256, 54},   {35, "TQ2_0", 256, 66},
    {36, "IQ4_NL_4_4", 0, 0}, {37, "IQ4_NL_4_8", 0, 0}, {38, "IQ4_NL_8_8", 0, 0},
    {39, "MXFP4", 32, 17},
};

const GgmlType* find_ggml_type(uint32_t id) {
  for (const GgmlType& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

std::optional<DType> readable_dtype(uint32_t type) {
  switch (type) {
    case uint32_t(TensorType::F32):
      return DType::F32;
    case uint32_t(TensorType::F16):
      return DType::F16;
    case uint32_t(TensorType::BF16):
      return DType::BF16;
    default:
      // The quantized block types TapML computes with (core/quant.h); not the i-quants, the
      // ternary types, MXFP4 or Q8_1/Q8_K (ggml's activation-side types).
      if (std::optional<QuantType> q = quant_from_ggml_id(type)) return dtype_of(*q);
      return std::nullopt;
  }
}

bool valid_value_type(uint32_t t) { return t <= uint32_t(ValueType::F64); }

bool is_unsigned(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64;
}
bool is_signed(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}
bool is_integer(ValueType t) { return is_unsigned(t) || is_signed(t); }

// Bytes a value of type t occupies at the least, so a count can be checked against the
// bytes left before anything is allocated for it.
uint64_t min_encoded_size(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::BOOL:
      return 1;
    case ValueType::U16:
    case ValueType::I16:
      return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32:
      return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64:
      return 8;
    case ValueType::STRING:
      return 8;  // the length
    case ValueType::ARRAY:
      return 12;  // element type + count
  }
  return 1;
}

// Names and keys come from untrusted bytes: keep messages on one printable line.
std::string quoted(std::string_view s) {
  std::string out = "'";
  size_t shown = 0;
  for (unsigned char c : s) {
    if (++shown > 80) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '\'') {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out + "'";
}

std::string str(uint64_t x) { return std::to_string(x); }

// Reads fields front to back, checking each against the bytes left. `context_` names the
// item being read so that every message says where the file went wrong.
class Parser {
 public:
  Parser(const uint8_t* data, uint64_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  [[noreturn]] void fail(const std::string& what) const { throw Error(path_ + ": " + what); }

  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  void set_context(std::string c) { context_ = std::move(c); }
  const std::string& context() const { return context_; }

  void need(uint64_t n, const char* field) const {
    if (n > left())
      fail("truncated: " + context_ + " " + field + " needs " + str(n) + " bytes at offset " +
           str(pos_) + ", only " + str(left()) + " left");
  }

  template <class T>
  T read(const char* field) {
    need(sizeof(T), field);
    T x;
    std::memcpy(&x, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return x;
  }

  // `count` items of at least `min_each` bytes: refuses before any allocation when they
  // cannot fit, telling a corrupt count from a cut-off file.
  void need_items(uint64_t count, uint64_t min_each, const std::string& what) const {
    if (count <= left() / min_each) return;
    if (count > kImpossibleBytes / min_each)
      fail(context_ + ": " + what + " count " + str(count) + " at offset " + str(pos_) +
           " is impossibly large (the file has " + str(size_) + " bytes)");
    fail("truncated: " + context_ + ": " + str(count) + " " + what + " need at least " +
         str(count * min_each) + " bytes at offset " + str(pos_) + ", only " + str(left()) +
         " left");
  }

  std::string read_string(const char* field) {
    uint64_t n = read<uint64_t>(field);
    if (n > left()) {
      if (n > kImpossibleBytes)
        fail(context_ + ": " + field + " string length " + str(n) + " at offset " + str(pos_ - 8) +
             " is impossibly large (the file has " + str(size_) + " bytes)");
      fail("truncated: " + context_ + " " + field + " string of " + str(n) + " bytes at offset " +
           str(pos_) + ", only " + str(left()) + " left");
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), size_t(n));
    pos_ += n;
    return s;
  }

  ValueType read_value_type(const char* field) {
    uint64_t at = pos_;
    uint32_t t = read<uint32_t>(field);
    if (!valid_value_type(t))
      fail(context_ + ": unknown " + field + " " + str(t) + " at offset " + str(at) +
           " (GGUF value types are 0 to 12)");
    return ValueType(t);
  }

  Value read_value(ValueType t, int depth) {
    Value v;
    v.type = t;
    switch (t) {
      case ValueType::U8:
        v.v = uint64_t(read<uint8_t>("value"));
        break;
      case ValueType::I8:
        v.v = int64_t(read<int8_t>("value"));
        break;
      case ValueType::U16:
        v.v = uint64_t(read<uint16_t>("value"));
        break;
      case ValueType::I16:
        v.v = int64_t(read<int16_t>("value"));
        break;
      case ValueType::U32:
        v.v = uint64_t(read<uint32_t>("value"));
        break;
      case ValueType::I32:
        v.v = int64_t(read<int32_t>("value"));
        break;
      case ValueType::U64:
        v.v = read<uint64_t>("value");
        break;
      case ValueType::I64:
        v.v = read<int64_t>("value");
        break;
      case ValueType::F32:
        v.v = double(read<float>("value"));
        break;
      case ValueType::F64:
        v.v = read<double>("value");
        break;
      case ValueType::BOOL: {
        uint8_t b = read<uint8_t>("value");
        if (b > 1)
          fail(context_ + ": bool value " + str(b) + " at offset " + str(pos_ - 1) +
               " is neither 0 nor 1");
        v.v = b == 1;
        break;
      }
      case ValueType::STRING:
        v.v = read_string("value");
        break;
      case ValueType::ARRAY: {
        if (depth >= kMaxArrayDepth)
          fail(context_ + ": arrays nested more than " + str(kMaxArrayDepth) + " deep at offset " +
               str(pos_));
        v.elem_type = read_value_type("array element type");
        uint64_t n = read<uint64_t>("array count");
        need_items(n, min_encoded_size(v.elem_type), "array of " + value_type_name(v.elem_type));
        if (n > kMaxValues - values_)
          fail(context_ + ": array of " + str(n) + " items at offset " + str(pos_) +
               " would take the metadata past " + str(kMaxValues) + " values in all");
        values_ += n;
        Array items;
        items.reserve(size_t(n));
        for (uint64_t i = 0; i < n; ++i) items.push_back(read_value(v.elem_type, depth + 1));
        v.v = std::move(items);
        break;
      }
    }
    return v;
  }

 private:
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t values_ = 0;  // array items parsed so far, against kMaxValues
  const std::string& path_;
  std::string context_ = "header";
};

bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

std::string type_label(uint32_t type) {
  std::string_view n = tensor_type_name(type);
  return (n.empty() ? std::string("unknown type") : std::string(n)) + " (id " + str(type) + ")";
}

}  // namespace

std::string value_type_name(ValueType t) {
  static const char* const names[] = {"U8",   "I8",     "U16",   "I16", "U32", "I32", "F32",
                                      "BOOL", "STRING", "ARRAY", "U64", "I64", "F64"};
  uint32_t i = uint32_t(t);
  return i < std::size(names) ? names[i] : "type " + str(i);
}

std::string_view tensor_type_name(uint32_t type) {
  const GgmlType* t = find_ggml_type(type);
  return t ? t->name : "";
}

bool tensor_type_readable(uint32_t type) { return readable_dtype(type).has_value(); }

std::string describe(const Value& v, size_t max_items) {
  if (auto* u = std::get_if<uint64_t>(&v.v)) return str(*u);
  if (auto* i = std::get_if<int64_t>(&v.v)) return std::to_string(*i);
  if (auto* d = std::get_if<double>(&v.v)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", *d);
    return buf;
  }
  if (auto* b = std::get_if<bool>(&v.v)) return *b ? "true" : "false";
  if (auto* s = std::get_if<std::string>(&v.v)) return quoted(*s);
  const Array& a = std::get<Array>(v.v);
  std::string out = "[" + value_type_name(v.elem_type) + " x " + str(a.size());
  for (size_t i = 0; i < a.size() && i < max_items; ++i)
    out += (i ? ", " : ": ") + describe(a[i], max_items);
  if (a.size() > max_items) out += ", ...";
  return out + "]";
}

// ---------------------------------------------------------------------------------------
// File

bool File::has_magic(const std::string& path) {
  char magic[4] = {};
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  size_t n = std::fread(magic, 1, 4, f);
  std::fclose(f);
  return n == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

File File::open(const std::string& path) {
  std::shared_ptr<const MappedFile> m = MappedFile::open(path);
  const uint8_t* data = m->data();
  size_t size = m->size();
  return from_memory(std::move(m), data, size, path);
}

File File::from_memory(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                       std::string name) {
  File f;
  f.path_ = std::move(name);
  TAPML_REQUIRE(data != nullptr || size == 0, f.path_ + ": no data");
  f.mapping_ = std::move(owner);
  f.base_ = data;
  f.size_ = size;
  Parser p(data, size, f.path_);

  p.set_context("header");
  uint32_t magic = p.read<uint32_t>("magic");
  if (magic != kMagic) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "0x%02x%02x%02x%02x", data[0], data[1], data[2], data[3]);
    p.fail(std::string("not a GGUF file (magic ") + buf + ", expected 0x47475546 \"GGUF\")");
  }
  f.version_ = p.read<uint32_t>("version");
  if (f.version_ != 2 && f.version_ != 3) {
    std::string hint = f.version_ == 1 ? "; re-convert the model with a current llama.cpp"
                       : (f.version_ & 0xffff) == 0 ? "; big-endian GGUF files are not supported"
                                                    : "";
    p.fail("GGUF version " + str(f.version_) +
           " is not supported (this build reads versions 2 and 3)" + hint);
  }
  uint64_t n_tensors = p.read<uint64_t>("tensor count");
  uint64_t n_kv = p.read<uint64_t>("metadata count");
  // The smallest metadata entry: key length + 1 key byte + type + 1 value byte.
  p.need_items(n_kv, 8 + 1 + 4 + 1, "metadata entries");

  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string where = "metadata " + str(i + 1) + " of " + str(n_kv);
    p.set_context(where);
    uint64_t key_at = p.pos();
    std::string key = p.read_string("key");
    if (key.empty()) p.fail(where + ": empty key at offset " + str(key_at));
    if (key.size() > kMaxKey)
      p.fail(where + ": key of " + str(key.size()) + " bytes exceeds the " + str(kMaxKey) +
             "-byte limit");
    p.set_context(where + " " + quoted(key));
    ValueType t = p.read_value_type("value type");
    Value v = p.read_value(t, 0);
    if (!f.kv_.emplace(key, std::move(v)).second)
      p.fail("duplicate metadata key " + quoted(key) + " (" + where + ")");
  }

  if (const Value* a = f.find("general.alignment")) {
    if (!is_integer(a->type))
      p.fail("general.alignment is " + value_type_name(a->type) + ", expected U32");
    const uint64_t* u = std::get_if<uint64_t>(&a->v);
    const int64_t* s = std::get_if<int64_t>(&a->v);
    uint64_t x = u ? *u : (*s < 0 ? 0 : uint64_t(*s));
    if (x == 0 || x > std::numeric_limits<uint32_t>::max() || !std::has_single_bit(x))
      p.fail("general.alignment " + describe(*a) + " is not a power of two between 1 and 2^31");
    f.alignment_ = x;
  }

  // The smallest tensor info: name length + 1 name byte + n_dims + one ne + type + offset.
  p.set_context("tensor directory");
  p.need_items(n_tensors, 8 + 1 + 4 + 8 + 4 + 8, "tensor infos");
  f.tensors_.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    std::string where = "tensor info " + str(i + 1) + " of " + str(n_tensors);
    p.set_context(where);
    TensorInfo ti;
    ti.name = p.read_string("name");
    if (ti.name.empty()) p.fail(where + ": empty tensor name");
    if (ti.name.size() > kMaxTensorName)
      p.fail(where + ": tensor name " + quoted(ti.name) + " is " + str(ti.name.size()) +
             " bytes, longer than the " + str(kMaxTensorName) + "-byte limit");
    where = "tensor " + quoted(ti.name);
    p.set_context(where + " (" + p.context() + ")");
    uint32_t n_dims = p.read<uint32_t>("n_dims");
    if (n_dims == 0 || n_dims > kMaxDims)
      p.fail(where + " has n_dims " + str(n_dims) + " (must be 1 to " + str(kMaxDims) + ")");
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = p.read<uint64_t>("dimension");
      if (ne == 0) p.fail(where + " has dimension ne[" + str(d) + "] = 0");
      if (!checked_mul(numel, ne, &numel) || numel > uint64_t(std::numeric_limits<int64_t>::max()))
        p.fail(where + " has an element count that overflows (ne[" + str(d) + "] = " + str(ne) +
               ")");
      ti.ne.push_back(ne);
    }
    ti.type = p.read<uint32_t>("type");
    const GgmlType* gt = find_ggml_type(ti.type);
    if (!gt) p.fail(where + " has unknown ggml type id " + str(ti.type));
    if (gt->block == 0)
      p.fail(where + " has type " + type_label(ti.type) +
             ", which ggml no longer stores in GGUF files; re-convert the model");
    if (ti.ne[0] % gt->block != 0)
      p.fail(where + " has ne[0] = " + str(ti.ne[0]) + ", not a multiple of the " + str(gt->block) +
             "-element blocks of " + gt->name);
    if (!checked_mul(numel / gt->block, gt->block_bytes, &ti.nbytes))
      p.fail(where + " is too large: its byte size overflows");
    ti.offset = p.read<uint64_t>("data offset");
    if (!f.tensor_index_.emplace(ti.name, f.tensors_.size()).second)
      p.fail("duplicate tensor name " + quoted(ti.name) + " (" + p.context() + ")");
    f.tensors_.push_back(std::move(ti));
  }

  // The data section starts at the next multiple of the alignment; pos <= size < 2^63, so
  // rounding up cannot overflow.
  f.data_offset_ = (p.pos() + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  uint64_t avail = f.size_ > f.data_offset_ ? f.size_ - f.data_offset_ : 0;
  for (const TensorInfo& ti : f.tensors_) {
    if (ti.offset % f.alignment_ != 0)
      p.fail("tensor " + quoted(ti.name) + " data offset " + str(ti.offset) +
             " is not a multiple of the alignment " + str(f.alignment_));
    if (ti.offset > avail || ti.nbytes > avail - ti.offset)
      p.fail("tensor " + quoted(ti.name) + " data (" + str(ti.nbytes) + " bytes at file offset " +
             str(f.data_offset_) + " + " + str(ti.offset) + ") extends past the end of the file (" +
             str(f.size_) + " bytes)");
  }
  std::vector<const TensorInfo*> by_offset;
  by_offset.reserve(f.tensors_.size());
  for (const TensorInfo& ti : f.tensors_) by_offset.push_back(&ti);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo* a = by_offset[i - 1];
    const TensorInfo* b = by_offset[i];
    if (a->offset + a->nbytes > b->offset)
      p.fail("tensors " + quoted(a->name) + " and " + quoted(b->name) + " overlap (data bytes [" +
             str(a->offset) + ", " + str(a->offset + a->nbytes) + ") and [" + str(b->offset) +
             ", " + str(b->offset + b->nbytes) + "))");
  }
  return f;
}

const Value* File::find(const std::string& key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

namespace {

[[noreturn]] void wrong_type(const std::string& path, const std::string& key, const Value& v,
                             const char* expected) {
  throw Error(path + ": metadata '" + key + "' is " + value_type_name(v.type) + ", expected " +
              expected);
}

}  // namespace

uint64_t File::get_uint(const std::string& key) const {
  const Value* v = find(key);
  if (!v) throw Error(path_ + ": metadata '" + key + "' is missing");
  if (const uint64_t* u = std::get_if<uint64_t>(&v->v)) return *u;
  if (const int64_t* s = std::get_if<int64_t>(&v->v)) {
    if (*s < 0)
      throw Error(path_ + ": metadata '" + key + "' is " + std::to_string(*s) +
                  ", expected a non-negative integer");
    return uint64_t(*s);
  }
  wrong_type(path_, key, *v, "an unsigned integer");
}

int64_t File::get_int(const std::string& key) const {
  const Value* v = find(key);
  if (!v) throw Error(path_ + ": metadata '" + key + "' is missing");
  if (const int64_t* s = std::get_if<int64_t>(&v->v)) return *s;
  if (const uint64_t* u = std::get_if<uint64_t>(&v->v)) {
    if (*u > uint64_t(std::numeric_limits<int64_t>::max()))
      throw Error(path_ + ": metadata '" + key + "' is " + str(*u) + ", too large for int64");
    return int64_t(*u);
  }
  wrong_type(path_, key, *v, "an integer");
}

double File::get_float(const std::string& key) const {
  const Value* v = find(key);
  if (!v) throw Error(path_ + ": metadata '" + key + "' is missing");
  if (const double* d = std::get_if<double>(&v->v)) return *d;
  // Some converters write whole-number hyperparameters as integers.
  if (const uint64_t* u = std::get_if<uint64_t>(&v->v)) return double(*u);
  if (const int64_t* s = std::get_if<int64_t>(&v->v)) return double(*s);
  wrong_type(path_, key, *v, "a number");
}

bool File::get_bool(const std::string& key) const {
  const Value* v = find(key);
  if (!v) throw Error(path_ + ": metadata '" + key + "' is missing");
  if (const bool* b = std::get_if<bool>(&v->v)) return *b;
  wrong_type(path_, key, *v, "BOOL");
}

const std::string& File::get_string(const std::string& key) const {
  const Value* v = find(key);
  if (!v) throw Error(path_ + ": metadata '" + key + "' is missing");
  if (const std::string* s = std::get_if<std::string>(&v->v)) return *s;
  wrong_type(path_, key, *v, "STRING");
}

const Array& File::get_array(const std::string& key) const {
  const Value* v = find(key);
  if (!v) throw Error(path_ + ": metadata '" + key + "' is missing");
  if (const Array* a = std::get_if<Array>(&v->v)) return *a;
  wrong_type(path_, key, *v, "ARRAY");
}

uint64_t File::get_uint_or(const std::string& key, uint64_t fallback) const {
  return has(key) ? get_uint(key) : fallback;
}
double File::get_float_or(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool File::get_bool_or(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}
std::string File::get_string_or(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> File::tensor_bytes(const std::string& name) const {
  const TensorInfo* ti = find_tensor(name);
  if (!ti) throw Error(path_ + ": no tensor named " + quoted(name));
  return {base_ + data_offset_ + ti->offset, size_t(ti->nbytes)};
}

Tensor File::tensor(const std::string& name) const {
  const TensorInfo* ti = find_tensor(name);
  if (!ti) throw Error(path_ + ": no tensor named " + quoted(name));
  std::optional<DType> dt = readable_dtype(ti->type);
  if (!dt)
    throw Error(path_ + ": tensor " + ti->name + " has type " + type_label(ti->type) +
                ", which TapML cannot read yet");
  std::vector<int64_t> dims(ti->ne.rbegin(), ti->ne.rend());
  const uint8_t* p = base_ + data_offset_ + ti->offset;
  Tensor t(*dt, Shape(std::move(dims)), p, mapping_);
  // Typed access through a misaligned pointer is undefined; only odd alignments cause it.
  // Blocks are read byte-wise (dequantize_row needs no alignment).
  if (!is_block(*dt) && reinterpret_cast<uintptr_t>(p) % dtype_size(*dt) != 0) return t.clone();
  return t;
}

// ---------------------------------------------------------------------------------------
// Writer

namespace {

// Checks that a Value holds what its type says and that integers fit their width, so a
// written file always reads back.
void check_value(const std::string& key, const Value& v, int depth) {
  auto bad = [&](const std::string& what) {
    throw Error("gguf writer: metadata '" + key + "': " + what);
  };
  if (!valid_value_type(uint32_t(v.type))) bad("unknown value type " + str(uint32_t(v.type)));
  if (is_integer(v.type)) {
    const uint64_t* u = std::get_if<uint64_t>(&v.v);
    const int64_t* s = std::get_if<int64_t>(&v.v);
    if (!u && !s) bad(value_type_name(v.type) + " value must hold an integer");
    unsigned bits = 8 * unsigned(min_encoded_size(v.type));
    bool fits;
    if (is_unsigned(v.type)) {
      uint64_t max = bits == 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1;
      fits = u ? *u <= max : (*s >= 0 && uint64_t(*s) <= max);
    } else {
      int64_t max =
          bits == 64 ? std::numeric_limits<int64_t>::max() : (int64_t(1) << (bits - 1)) - 1;
      int64_t min = -max - 1;
      fits = s ? (*s >= min && *s <= max) : *u <= uint64_t(max);
    }
    if (!fits) bad("value " + describe(v) + " does not fit " + value_type_name(v.type));
    return;
  }
  switch (v.type) {
    case ValueType::F32:
    case ValueType::F64:
      if (!std::holds_alternative<double>(v.v))
        bad(value_type_name(v.type) + " must hold a double");
      return;
    case ValueType::BOOL:
      if (!std::holds_alternative<bool>(v.v)) bad("BOOL must hold a bool");
      return;
    case ValueType::STRING:
      if (!std::holds_alternative<std::string>(v.v)) bad("STRING must hold a string");
      return;
    case ValueType::ARRAY: {
      const Array* a = std::get_if<Array>(&v.v);
      if (!a) bad("ARRAY must hold an Array");
      if (depth >= kMaxArrayDepth) bad("arrays nested more than " + str(kMaxArrayDepth) + " deep");
      if (!valid_value_type(uint32_t(v.elem_type)))
        bad("unknown array element type " + str(uint32_t(v.elem_type)));
      for (const Value& e : *a) {
        if (e.type != v.elem_type)
          bad("array of " + value_type_name(v.elem_type) + " holds a " + value_type_name(e.type));
        check_value(key, e, depth + 1);
      }
      return;
    }
    default:
      return;
  }
}

uint32_t ggml_type_of(DType t) {
  switch (t) {
    case DType::F32:
      return uint32_t(TensorType::F32);
    case DType::F16:
      return uint32_t(TensorType::F16);
    case DType::BF16:
      return uint32_t(TensorType::BF16);
    default:
      // Block types keep ggml's ids; the bytes are whole blocks per row (rank >= 1, checked
      // by tensor_bytes).
      if (std::optional<QuantType> q = block_quant(t)) return uint32_t(*q);
      throw Error("gguf writer: dtype " + std::string(dtype_name(t)) +
                  " cannot be written (F32, F16, BF16 or a quantized block type)");
  }
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// Buffered output to a file descriptor that remembers the first error.
class Sink {
 public:
  explicit Sink(int fd) : fd_(fd) { buf_.reserve(kBuffer); }

  void put(const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    pos_ += n;
    if (buf_.size() + n <= kBuffer) {
      buf_.insert(buf_.end(), c, c + n);
      return;
    }
    flush();
    if (n >= kBuffer) {
      raw_write(c, n);  // large tensors go straight from their memory to the file
    } else {
      buf_.insert(buf_.end(), c, c + n);
    }
  }
  template <class T>
  void put_le(T x) {
    put(&x, sizeof x);
  }
  void put_string(const std::string& s) {
    put_le<uint64_t>(s.size());
    put(s.data(), s.size());
  }
  void pad_to(uint64_t alignment) {
    static const char zeros[256] = {};
    uint64_t n = align_up(pos_, alignment) - pos_;
    while (n > 0) {
      size_t k = size_t(std::min<uint64_t>(n, sizeof zeros));
      put(zeros, k);
      n -= k;
    }
  }
  void flush() {
    raw_write(buf_.data(), buf_.size());
    buf_.clear();
  }
  uint64_t pos() const { return pos_; }
  int error() const { return error_; }

 private:
  static constexpr size_t kBuffer = 1 << 20;

  void raw_write(const char* p, size_t n) {
    while (n > 0 && error_ == 0) {
      ssize_t k = ::write(fd_, p, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        error_ = errno;
        return;
      }
      p += k;
      n -= size_t(k);
    }
  }

  int fd_;
  std::vector<char> buf_;
  uint64_t pos_ = 0;
  int error_ = 0;
};

void put_value(Sink& s, const Value& v) {
  auto as_u = [&]() -> uint64_t {
    if (const uint64_t* u = std::get_if<uint64_t>(&v.v)) return *u;
    return uint64_t(std::get<int64_t>(v.v));
  };
  switch (v.type) {
    case ValueType::U8:
    case ValueType::I8:
      s.put_le(uint8_t(as_u()));
      break;
    case ValueType::U16:
    case ValueType::I16:
      s.put_le(uint16_t(as_u()));
      break;
    case ValueType::U32:
    case ValueType::I32:
      s.put_le(uint32_t(as_u()));
      break;
    case ValueType::U64:
    case ValueType::I64:
      s.put_le(as_u());
      break;
    case ValueType::F32:
      s.put_le(float(std::get<double>(v.v)));
      break;
    case ValueType::F64:
      s.put_le(std::get<double>(v.v));
      break;
    case ValueType::BOOL:
      s.put_le(uint8_t(std::get<bool>(v.v) ? 1 : 0));
      break;
    case ValueType::STRING:
      s.put_string(std::get<std::string>(v.v));
      break;
    case ValueType::ARRAY: {
      const Array& a = std::get<Array>(v.v);
      s.put_le(uint32_t(v.elem_type));
      s.put_le(uint64_t(a.size()));
      for (const Value& e : a) put_value(s, e);
      break;
    }
  }
}

}  // namespace

void Writer::set(const std::string& key, Value value) {
  TAPML_REQUIRE(!key.empty(), "gguf writer: empty metadata key");
  TAPML_REQUIRE(key.size() <= kMaxKey, "gguf writer: metadata key longer than 65535 bytes");
  check_value(key, value, 0);
  if (key == "general.alignment") {
    const uint64_t* u = std::get_if<uint64_t>(&value.v);
    const int64_t* s = std::get_if<int64_t>(&value.v);
    uint64_t x = u ? *u : (s && *s > 0 ? uint64_t(*s) : 0);
    TAPML_REQUIRE(value.type == ValueType::U32 && std::has_single_bit(x),
                  "gguf writer: general.alignment must be a U32 power of two");
    alignment_ = uint32_t(x);
  }
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv_.emplace_back(key, std::move(value));
}

void Writer::set_string(const std::string& key, const std::string& s) {
  set(key, Value{ValueType::STRING, s});
}
void Writer::set_u32(const std::string& key, uint32_t x) {
  set(key, Value{ValueType::U32, uint64_t(x)});
}
void Writer::set_f32(const std::string& key, float x) {
  set(key, Value{ValueType::F32, double(x)});
}
void Writer::set_bool(const std::string& key, bool x) { set(key, Value{ValueType::BOOL, x}); }

void Writer::set_string_array(const std::string& key, const std::vector<std::string>& xs) {
  Array a;
  a.reserve(xs.size());
  for (const std::string& x : xs) a.push_back(Value{ValueType::STRING, x});
  set(key, Value{ValueType::ARRAY, std::move(a), ValueType::STRING});
}
void Writer::set_f32_array(const std::string& key, const std::vector<float>& xs) {
  Array a;
  a.reserve(xs.size());
  for (float x : xs) a.push_back(Value{ValueType::F32, double(x)});
  set(key, Value{ValueType::ARRAY, std::move(a), ValueType::F32});
}
void Writer::set_i32_array(const std::string& key, const std::vector<int32_t>& xs) {
  Array a;
  a.reserve(xs.size());
  for (int32_t x : xs) a.push_back(Value{ValueType::I32, int64_t(x)});
  set(key, Value{ValueType::ARRAY, std::move(a), ValueType::I32});
}

void Writer::set_alignment(uint32_t a) { set_u32("general.alignment", a); }

void Writer::check_new_tensor(const std::string& name, DType dtype, const Shape& shape) const {
  TAPML_REQUIRE(!name.empty(), "gguf writer: empty tensor name");
  TAPML_REQUIRE(name.size() <= kMaxTensorName,
                "gguf writer: tensor name '" + name + "' is longer than 64 bytes");
  ggml_type_of(dtype);
  TAPML_REQUIRE(shape.rank() >= 1 && shape.rank() <= kMaxDims,
                "gguf writer: tensor '" + name + "' has rank " + str(shape.rank()) + " (1 to 4)");
  for (int64_t d : shape.dims())
    TAPML_REQUIRE(d >= 1, "gguf writer: tensor '" + name + "' has shape " + shape.str());
  TAPML_REQUIRE(shape.back() % block_elems(dtype) == 0,
                "gguf writer: tensor '" + name + "' is " + std::string(dtype_name(dtype)) + " " +
                    shape.str() + ": its rows must be whole " + std::to_string(block_elems(dtype)) +
                    "-element blocks");
  for (const PendingTensor& t : tensors_)
    TAPML_REQUIRE(t.name != name, "gguf writer: duplicate tensor '" + name + "'");
}

void Writer::add_tensor(const std::string& name, const Tensor& t) {
  TAPML_REQUIRE(!t.empty(), "gguf writer: tensor '" + name + "' has no data");
  check_new_tensor(name, t.dtype(), t.shape());
  tensors_.push_back({name, t.dtype(), t.shape(), t, nullptr});
}

void Writer::add_tensor(const std::string& name, DType dtype, const Shape& shape, TensorFill fill) {
  TAPML_REQUIRE(bool(fill), "gguf writer: tensor '" + name + "' has no fill function");
  check_new_tensor(name, dtype, shape);
  tensors_.push_back({name, dtype, shape, Tensor(), std::move(fill)});
}

void Writer::write(const std::string& path) const {
  AtomicFile file(path);
  Sink s(file.fd());
  s.put_le(kMagic);
  s.put_le(uint32_t(3));
  s.put_le(uint64_t(tensors_.size()));
  s.put_le(uint64_t(kv_.size()));
  for (const auto& [k, v] : kv_) {
    s.put_string(k);
    s.put_le(uint32_t(v.type));
    put_value(s, v);
  }
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    s.put_string(t.name);
    s.put_le(uint32_t(t.shape.rank()));
    for (size_t i = t.shape.rank(); i-- > 0;) s.put_le(uint64_t(t.shape[i]));
    s.put_le(ggml_type_of(t.dtype));
    s.put_le(offset);
    offset = align_up(offset + uint64_t(tensor_bytes(t.dtype, t.shape)), alignment_);
  }
  s.pad_to(alignment_);
  std::vector<std::byte> chunk;
  for (const PendingTensor& t : tensors_) {
    if (s.error()) break;
    uint64_t nbytes = uint64_t(tensor_bytes(t.dtype, t.shape));
    if (!t.fill) {
      s.put(t.data.bytes(), size_t(nbytes));
    } else {
      chunk.resize(size_t(std::min<uint64_t>(nbytes, 4 << 20)));
      for (uint64_t done = 0; done < nbytes && !s.error();) {
        size_t n = size_t(std::min<uint64_t>(nbytes - done, chunk.size()));
        t.fill(done, std::span<std::byte>(chunk.data(), n));
        s.put(chunk.data(), n);
        done += n;
      }
    }
    s.pad_to(alignment_);
  }
  s.flush();
  if (s.error()) throw Error(path + ": cannot write: " + std::strerror(s.error()));
  file.commit();
}

}  // namespace tapml::gguf

#include "format/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_text.h"
#include "core/mapped_file.h"
#include "format/untrusted_json.h"

namespace tapml::safetensors {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian and is borrowed straight into host tensors");

namespace {

using ordered_json = nlohmann::ordered_json;

// The reference implementation refuses headers over 100 MB; so do we, before parsing.
constexpr uint64_t kMaxHeader = 100'000'000;
// Element counts past this are impossible rather than merely too large for the file (2^56
// elements of 8 bytes are 512 PiB), which keeps every size computed below within 64 bits.
constexpr uint64_t kMaxElements = uint64_t(1) << 56;

// Every dtype the specification names, with its width in bits: F4 and F6 pack elements
// below a byte, so sizes are computed in bits.
struct FileDtype {
  const char* name;
  unsigned bits;
};
constexpr FileDtype kFileDtypes[] = {
    {"BOOL", 8},        {"F4", 4},      {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8},
    {"I8", 8},          {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8},
    {"F8_E5M2FNUZ", 8}, {"I16", 16},    {"U16", 16},    {"F16", 16},    {"BF16", 16},
    {"I32", 32},        {"U32", 32},    {"F32", 32},    {"C64", 64},    {"F64", 64},
    {"I64", 64},        {"U64", 64},
};

// 0 for names the specification does not have.
unsigned dtype_bits(const std::string& name) {
  for (const FileDtype& d : kFileDtypes)
    if (name == d.name) return d.bits;
  return 0;
}

const char* file_dtype(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    case DType::I32:
      return "I32";
    default:
      return "?";
  }
}

bool dtype_of_file_name(const std::string& s, DType* out) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I32})
    if (s == file_dtype(t)) return *out = t, true;
  return false;
}

std::string str(uint64_t x) { return std::to_string(x); }
std::string bytes(uint64_t n) { return str(n) + (n == 1 ? " byte" : " bytes"); }

// A JSON value in a message: scalars as written (cut short), containers by kind, so that a
// hostile header never makes a long message or a deep dump.
std::string shown(const ordered_json& v) {
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  std::string s = json_text(v);
  if (s.size() > 60) {
    size_t n = 57;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
    s = s.substr(0, n) + "...";
  }
  return s;
}

// An array's items (the first few) shown as above, anything else as shown().
std::string shown_items(const ordered_json& v) {
  if (!v.is_array()) return shown(v);
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i == 4) {
      out += ", ...";
      break;
    }
    out += (i ? ", " : "") + shown(v[i]);
  }
  return out + "]";
}

// A non-negative integer JSON value, or false.
bool get_count(const ordered_json& v, uint64_t* out) {
  if (v.is_number_unsigned()) return *out = v.get<uint64_t>(), true;
  if (v.is_number_integer() && v.get<int64_t>() == 0) return *out = 0, true;  // "-0"
  return false;
}

struct Header {
  std::vector<TensorEntry> entries;  // in the order of their bytes
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;
};

// The one header parser behind File and read(): checks everything in the header comment of
// safetensors.h against the `size` bytes at `base`.
Header parse_header(const uint8_t* base, uint64_t size, const std::string& path) {
  auto fail = [&](const std::string& what) -> Error { return Error(path + ": " + what); };
  if (size < 8) throw fail("not a safetensors file (" + str(size) + " bytes)");
  uint64_t header_len;
  std::memcpy(&header_len, base, 8);
  if (header_len > kMaxHeader && header_len > size - 8)
    throw fail("header length " + str(header_len) + " is absurd (the limit is " + str(kMaxHeader) +
               " bytes): not a safetensors file");
  if (header_len > size - 8)
    throw fail("header of " + str(header_len) + " bytes runs past the end of the " + str(size) +
               "-byte file (truncated, or not a safetensors file)");
  if (header_len > kMaxHeader)
    throw fail("header of " + str(header_len) + " bytes is over the " + str(kMaxHeader) +
               "-byte limit");
  std::string_view text(reinterpret_cast<const char*>(base + 8), size_t(header_len));
  if (text.empty() || text[0] != '{')
    throw fail("header is not a JSON object (it must start with '{')");
  // Real headers nest 3 deep (tensor, entry, shape); the bound keeps hostile ones shallow.
  ordered_json json = parse_untrusted_json<ordered_json>(text, path + ": header", 16);
  if (!json.is_object()) throw fail("header is not a JSON object");

  Header h;
  h.data_offset = 8 + header_len;
  const uint64_t data_size = size - h.data_offset;
  for (auto& [name, v] : json.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is " + shown(v) + ", not an object");
      for (auto& [k, s] : v.items()) {
        if (!s.is_string())
          throw fail("__metadata__ value " + quote_name(k) + " is " + shown(s) + ", not a string");
        h.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor " + quote_name(name);
    if (!v.is_object()) throw fail(what + " is " + shown(v) + ", not an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!v.contains(key)) throw fail(what + " lacks '" + key + "'");
    TensorEntry e;
    e.name = name;
    const ordered_json& dtype = v["dtype"];
    if (!dtype.is_string()) throw fail(what + " has dtype " + shown(dtype) + ", not a string");
    e.dtype = dtype.get<std::string>();
    const unsigned bits = dtype_bits(e.dtype);
    if (bits == 0)
      throw fail(what + " has dtype " + quote_name(e.dtype) + ", which safetensors lacks");

    const ordered_json& shape = v["shape"];
    if (!shape.is_array()) throw fail(what + " has shape " + shown(shape) + ", not an array");
    uint64_t numel = 1, nonzero = 1;
    for (const ordered_json& d : shape) {
      uint64_t x;
      if (!get_count(d, &x))
        throw fail(what + " has a bad dimension " + shown(d) +
                   " (dimensions are non-negative integers)");
      // Zero dimensions make the count 0, but the others must still be sane: Shape
      // multiplies them in order.
      if (x != 0 && nonzero > kMaxElements / x)
        throw fail(what + " has an impossibly large shape (over 2^56 elements)");
      if (x != 0) nonzero *= x;
      numel = x == 0 ? 0 : numel * x;
      e.shape.push_back(int64_t(x));
    }

    const ordered_json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !get_count(off[0], &e.begin) ||
        !get_count(off[1], &e.end))
      throw fail(what + " has data_offsets " + shown_items(off) +
                 ", not two non-negative integers");
    const std::string range = "[" + str(e.begin) + ", " + str(e.end) + "]";
    if (e.end < e.begin)
      throw fail(what + " has data_offsets " + range + " that end before they begin");
    if (e.end > data_size)
      throw fail(what + " has data_offsets " + range + " outside the " + str(data_size) +
                 " data bytes (truncated?)");
    const uint64_t want_bits = numel * bits;
    if (want_bits % 8 != 0)
      throw fail(what + " has " + str(numel) + " " + e.dtype +
                 " elements, which do not fill whole bytes");
    const uint64_t want = want_bits / 8;
    if (e.end - e.begin != want)
      throw fail(what + " holds " + str(e.end - e.begin) + " bytes but " + e.dtype + " " +
                 shown_items(e.shape) + " needs " + str(want));
    h.entries.push_back(std::move(e));
  }

  // The specification has the tensors cover the data exactly: no overlaps, no holes and no
  // trailing bytes, so that nothing can hide in a file between its tensors.
  std::stable_sort(h.entries.begin(), h.entries.end(),
                   [](const TensorEntry& a, const TensorEntry& b) {
                     return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                   });
  uint64_t at = 0;
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& e : h.entries) {
    if (e.begin < at)
      throw fail("tensor " + quote_name(e.name) + " overlaps tensor " + quote_name(previous->name) +
                 " (bytes " + str(e.begin) + " to " + str(e.end) + " and " + str(previous->begin) +
                 " to " + str(previous->end) + ")");
    if (e.begin > at)
      throw fail("a hole of " + bytes(e.begin - at) + " before tensor " + quote_name(e.name) +
                 " (the format has none)");
    at = e.end;
    previous = &e;
  }
  if (at != data_size) throw fail(bytes(data_size - at) + " after the last tensor");
  return h;
}

}  // namespace

bool readable_dtype(const std::string& dtype) {
  DType t;
  return dtype_of_file_name(dtype, &t);
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
  Header h = parse_header(data, size, f.path_);
  f.entries_ = std::move(h.entries);
  f.metadata_ = std::move(h.metadata);
  for (size_t i = 0; i < f.entries_.size(); ++i) f.index_[f.entries_[i].name] = i;
  f.owner_ = std::move(owner);
  f.data_ = data + h.data_offset;
  return f;
}

const TensorEntry* File::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Tensor File::tensor(const std::string& name) const {
  const TensorEntry* e = find(name);
  if (!e) throw Error(path_ + ": no tensor named " + quote_name(name));
  DType dtype;
  if (!dtype_of_file_name(e->dtype, &dtype))
    throw Error(path_ + ": tensor " + quote_name(e->name) + " has dtype " + e->dtype +
                "; TapML reads F32, F16, BF16 and I32");
  if (e->shape.size() > Shape::kMaxRank)
    throw Error(path_ + ": tensor " + quote_name(e->name) + " has " +
                std::to_string(e->shape.size()) + " dimensions; TapML reads at most " +
                std::to_string(Shape::kMaxRank));
  const uint8_t* p = data_ + e->begin;
  Tensor t(dtype, Shape(e->shape), p, owner_);
  // Typed access through a misaligned pointer is undefined; the spec does not require the
  // header to be padded, so such files exist.
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(dtype) != 0) return t.clone();
  return t;
}

const Tensor* Contents::find(const std::string& name) const {
  for (const Entry& e : tensors)
    if (e.name == name) return &e.tensor;
  return nullptr;
}

void write(const std::string& path, const std::vector<Entry>& tensors,
           const std::map<std::string, std::string>& metadata) {
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) {
    ordered_json m = ordered_json::object();
    for (auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  uint64_t offset = 0;
  for (const Entry& e : tensors) {
    TAPML_REQUIRE(e.name != "__metadata__" && !e.name.empty(),
                  path + ": bad tensor name '" + e.name + "'");
    TAPML_REQUIRE(!header.contains(e.name), path + ": tensor name '" + e.name + "' repeats");
    uint64_t n = e.tensor.nbytes();
    header[e.name] = {{"dtype", file_dtype(e.tensor.dtype())},
                      {"shape", e.tensor.shape().dims()},
                      {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string text = json_text(header);
  // Spaces pad the header so the data starts 8-byte aligned, as the format recommends.
  text.append((8 - text.size() % 8) % 8, ' ');
  uint64_t length = text.size();
  std::vector<std::span<const std::byte>> pieces;
  pieces.push_back(std::as_bytes(std::span(&length, 1)));
  pieces.push_back(std::as_bytes(std::span(text.data(), text.size())));
  for (const Entry& e : tensors)
    if (e.tensor.nbytes() > 0) pieces.emplace_back(e.tensor.bytes(), e.tensor.nbytes());
  write_file_atomically(path, pieces);
}

Contents read(const std::string& path) {
  File file = File::open(path);
  Contents out;
  out.metadata = file.metadata();
  for (const TensorEntry& e : file.entries()) {
    Tensor t = file.tensor(e.name);
    out.tensors.push_back({e.name, t.clone()});
  }
  return out;
}

}  // namespace tapml::safetensors

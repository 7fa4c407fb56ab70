#include "format/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_text.h"
#include "core/mapped_file.h"

namespace tapml::safetensors {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian and is copied straight into host tensors");

namespace {

using ordered_json = nlohmann::ordered_json;

// The reference implementation refuses headers over 100 MB; so do we, before allocating.
constexpr uint64_t kMaxHeader = 100'000'000;

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
  }
  return "?";
}

bool dtype_of_file_name(const std::string& s, DType* out) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I32})
    if (s == file_dtype(t)) return *out = t, true;
  return false;
}

}  // namespace

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
  std::shared_ptr<const MappedFile> file = MappedFile::open(path);
  const uint8_t* base = file->data();
  const uint64_t size = file->size();
  auto fail = [&](const std::string& what) -> Error { return Error(path + ": " + what); };
  if (size < 8) throw fail("not a safetensors file (" + std::to_string(size) + " bytes)");
  uint64_t header_len;
  std::memcpy(&header_len, base, 8);
  if (header_len > size - 8)
    throw fail("header of " + std::to_string(header_len) + " bytes runs past the end of the " +
               std::to_string(size) + "-byte file (truncated, or not a safetensors file)");
  if (header_len > kMaxHeader)
    throw fail("header of " + std::to_string(header_len) + " bytes is larger than the limit");
  std::string_view text(reinterpret_cast<const char*>(base + 8), size_t(header_len));
  if (text.empty() || text[0] != '{') throw fail("header is not a JSON object");
  ordered_json header;
  try {
    header = ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) throw fail("header is not a JSON object");

  const uint8_t* data = base + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  Contents out;
  for (auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) throw fail("__metadata__ is not an object");
      for (auto& [k, s] : v.items()) {
        if (!s.is_string()) throw fail("__metadata__ value '" + k + "' is not a string");
        out.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor '" + name + "'";
    if (!v.is_object()) throw fail(what + " is not an object");
    for (const char* key : {"dtype", "shape", "data_offsets"})
      if (!v.contains(key)) throw fail(what + " lacks '" + key + "'");
    DType dtype;
    if (!v["dtype"].is_string() || !dtype_of_file_name(v["dtype"].get<std::string>(), &dtype))
      throw fail(what + " has dtype " + json_text(v["dtype"]) +
                 "; TapML reads F32, F16, BF16 and I32");
    const ordered_json& shape_json = v["shape"];
    if (!shape_json.is_array()) throw fail(what + " has a shape that is not an array");
    std::vector<int64_t> dims;
    uint64_t numel = 1;
    for (const ordered_json& d : shape_json) {
      if (!d.is_number_unsigned()) throw fail(what + " has a bad dimension " + json_text(d));
      uint64_t x = d.get<uint64_t>();
      if (x > uint64_t(std::numeric_limits<int64_t>::max()) ||
          (x != 0 && numel > (uint64_t(1) << 62) / x))
        throw fail(what + " has an impossibly large shape " + json_text(shape_json));
      numel *= x;
      dims.push_back(int64_t(x));
    }
    const ordered_json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      throw fail(what + " has bad data_offsets " + json_text(off));
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_size)
      throw fail(what + " has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                 "] outside the " + std::to_string(data_size) + " data bytes (truncated?)");
    uint64_t want = numel * dtype_size(dtype);
    if (end - begin != want)
      throw fail(what + " holds " + std::to_string(end - begin) + " bytes but " +
                 v["dtype"].get<std::string>() + " " + json_text(shape_json) + " needs " +
                 std::to_string(want));
    Tensor t(dtype, Shape(std::move(dims)));
    if (want > 0) std::memcpy(t.mutable_bytes(), data + begin, size_t(want));
    spans.push_back({begin, end, name});
    out.tensors.push_back({name, std::move(t)});
  }
  // The format has the tensors cover the data exactly: no overlaps, holes or trailing bytes.
  std::vector<size_t> order(spans.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return spans[a].begin < spans[b].begin; });
  uint64_t at = 0;
  for (size_t i : order) {
    if (spans[i].begin < at) throw fail("tensor '" + spans[i].name + "' overlaps another");
    if (spans[i].begin > at)
      throw fail("a hole of " + std::to_string(spans[i].begin - at) + " bytes before tensor '" +
                 spans[i].name + "'");
    at = spans[i].end;
  }
  if (at != data_size) throw fail(std::to_string(data_size - at) + " bytes after the last tensor");
  std::vector<Entry> sorted;
  for (size_t i : order) sorted.push_back(std::move(out.tensors[i]));
  out.tensors = std::move(sorted);
  return out;
}

}  // namespace tapml::safetensors

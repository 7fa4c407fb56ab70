// libFuzzer target: any bytes given to safetensors::File::from_memory must either parse or
// throw tapml::Error; every entry is then checked against the file's rules and turned into a
// Tensor, whose bytes are all read, so the sanitizers see any read the parser wrongly allowed.
// Each input is tried twice: as a file, and as "HEADER\nDATA" with the length prefix made to
// fit, since a mutation of the JSON text rarely keeps the prefix right by itself.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "core/error.h"
#include "format/safetensors.h"

using namespace tapml;

namespace {

volatile uint64_t sink;

void check(const uint8_t* data, size_t size) {
  std::optional<safetensors::File> file;
  try {
    file.emplace(safetensors::File::from_memory(nullptr, data, size, "fuzz.safetensors"));
  } catch (const Error&) {
    return;
  }
  uint64_t acc = 0;
  uint64_t at = 0;
  for (const safetensors::TensorEntry& e : file->entries()) {
    // Entries cover the data back to back, in order, and each is found by its name.
    if (e.begin != at || e.end < e.begin || e.end > size) __builtin_trap();
    at = e.end;
    if (file->find(e.name) != &e) __builtin_trap();
    try {
      Tensor t = file->tensor(e.name);
      if (!safetensors::readable_dtype(e.dtype)) __builtin_trap();
      if (t.nbytes() != e.end - e.begin || t.shape().dims() != e.shape) __builtin_trap();
      for (size_t i = 0; i < t.nbytes(); ++i) acc += uint8_t(t.bytes()[i]);
      if (t.numel() > 0)
        acc += uint64_t(t.get_f32(0) != 0) + uint64_t(t.get_f32(t.numel() - 1) != 0);
    } catch (const Error&) {
      if (safetensors::readable_dtype(e.dtype)) __builtin_trap();  // readable dtypes must read
    }
  }
  for (const auto& [k, v] : file->metadata()) acc += k.size() + v.size();
  sink = acc;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check(data, size);
  const uint8_t* newline = static_cast<const uint8_t*>(std::memchr(data, '\n', size));
  if (newline) {
    uint64_t header = uint64_t(newline - data);
    std::vector<uint8_t> file(8 + size - 1);
    std::memcpy(file.data(), &header, 8);
    std::memcpy(file.data() + 8, data, header);
    std::memcpy(file.data() + 8 + header, newline + 1, size - header - 1);
    check(file.data(), file.size());
  }
  return 0;
}

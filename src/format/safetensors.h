// Safetensors files, the format numpy and PyTorch users already read: a little-endian u64
// header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {string:
// string}} padded with spaces to 8-byte alignment, then the tensors' bytes back to back.
// Only the dtypes TapML has are written or read (F32, F16, BF16, I32). Reading checks every
// field against the file (offsets in bounds, sizes equal to shape x dtype, no overlaps or
// holes) and throws Error("PATH: what is wrong"); it never trusts the header blindly.
#pragma once
#include <cstddef>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace tapml::safetensors {

struct Entry {
  std::string name;
  Tensor tensor;
};

struct Contents {
  std::vector<Entry> tensors;  // in the order of their bytes in the file
  std::map<std::string, std::string> metadata;
  // Null when absent.
  const Tensor* find(const std::string& name) const;
};

// Writes `tensors` in this order, atomically (temporary file + rename).
void write(const std::string& path, const std::vector<Entry>& tensors,
           const std::map<std::string, std::string>& metadata);
// Reads a whole file; the tensors own copies of their bytes.
Contents read(const std::string& path);


}  // namespace tapml::safetensors

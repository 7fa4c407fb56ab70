// Safetensors files, the format numpy, PyTorch and Hugging Face checkpoints use: a
// little-endian u64 header length, a JSON header {name: {dtype, shape, data_offsets},
// "__metadata__": {string: string}} (the writer pads it with spaces to 8-byte alignment),
// then the tensors' bytes.
//
// Reading checks the header against the file before trusting any of it and throws
// Error("PATH: what is wrong") on one line: a header length past the file or over 100 MB,
// a header that is not one JSON object, a key given twice, an entry that is not an object or
// lacks a well-typed dtype, shape (non-negative integers) or data_offsets (two non-negative
// integers), a dtype the specification does not name, a shape whose element count cannot
// exist, offsets outside the data or ending before they begin, a size other than elements x
// element size, overlapping tensors, and __metadata__ values that are not strings.
// The specification says the data must be "entirely indexed, and cannot contain holes" (so
// no bytes can hide between tensors); TapML follows it and refuses holes and trailing bytes
// as the reference implementation does.
//
// Every entry the specification allows is kept, whatever its dtype (F64, I64, U8, BOOL,
// F8_E4M3, ...), so that a checkpoint with a buffer TapML never uses still opens. Only
// turning an entry into a Tensor requires a dtype TapML has (F32, F16, BF16, I32); otherwise
// that fails naming the tensor and its dtype. Only those dtypes are written.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace tapml::safetensors {

// One tensor of the header, checked against the file.
struct TensorEntry {
  std::string name;
  std::string dtype;            // as the file spells it: "F32", "I64", "F8_E4M3", ...
  std::vector<int64_t> shape;   // outermost first
  uint64_t begin = 0, end = 0;  // data_offsets: bytes [begin, end) of the data section
};

// Whether entries of this dtype (file spelling) convert to Tensors: F32, F16, BF16, I32.
bool readable_dtype(const std::string& dtype);

// A parsed safetensors file whose tensors borrow its bytes.
class File {
 public:
  // Maps `path` read-only and parses its header.
  static File open(const std::string& path);
  // Parses `size` bytes at `data`, which `owner` keeps alive (null when the caller
  // guarantees the bytes outlive the File and its tensors, as a fuzzer does). `name` stands
  // for the path in messages.
  static File from_memory(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                          std::string name);

  const std::string& path() const { return path_; }
  // Every tensor, in the order of its bytes in the file.
  const std::vector<TensorEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Null when absent.
  const TensorEntry* find(const std::string& name) const;
  // The tensor as a Tensor borrowing the file's bytes (its owner keeps the mapping alive).
  // Bytes not aligned to the element size in memory are copied instead. Throws Error for an
  // unknown name or a dtype TapML cannot read ("PATH: tensor 'x' has dtype I64; ...").
  Tensor tensor(const std::string& name) const;

 private:
  std::string path_;
  std::vector<TensorEntry> entries_;
  std::map<std::string, size_t> index_;  // name -> position in entries_
  std::map<std::string, std::string> metadata_;
  std::shared_ptr<const void> owner_;
  const uint8_t* data_ = nullptr;  // the data section
};

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
// Reads a whole file; the tensors own copies of their bytes, so every tensor must have a
// dtype TapML reads.
Contents read(const std::string& path);

}  // namespace tapml::safetensors

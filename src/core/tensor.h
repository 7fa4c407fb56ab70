// A host tensor: dtype, shape and contiguous row-major bytes. The bytes are shared and may
// be borrowed from something else that must stay alive (a memory-mapped model file); the
// owner is kept alive by the tensor's shared pointer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"

namespace tapml {

class Tensor {
 public:
  Tensor() = default;
  // Allocates zeroed storage.
  Tensor(DType dtype, Shape shape);
  // Borrows `data`; `owner` keeps it alive.
  Tensor(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner);

  static Tensor from_f32(Shape shape, std::span<const float> values);
  static Tensor from_i32(Shape shape, std::span<const int32_t> values);
  // f32 values stored as `dtype`: rounded to nearest even for f16/bf16, truncated for i32,
  // quantized row by row with quantize_row (ggml's reference quantizers) for a block type.
  static Tensor from_f32_as(DType dtype, Shape shape, std::span<const float> values);

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t numel() const { return shape_.numel(); }
  size_t nbytes() const { return tensor_bytes(dtype_, shape_); }
  bool empty() const { return data_ == nullptr; }

  const std::byte* bytes() const { return data_; }
  // Writable access; only for tensors that own their storage (throws otherwise).
  std::byte* mutable_bytes();
  template <class T>
  const T* data() const {
    return reinterpret_cast<const T*>(data_);
  }
  template <class T>
  T* mutable_data() {
    return reinterpret_cast<T*>(mutable_bytes());
  }

  // Element i converted to f32 (f32/f16/bf16/i32); throws Error for a block type, whose
  // elements cannot be read one at a time.
  float get_f32(int64_t i) const;
  // Every element converted to f32; block types are dequantized row by row.
  std::vector<float> to_f32() const;
  // A copy with its own storage.
  Tensor clone() const;
  // A tensor sharing this one's bytes with another shape of the same element count (for a
  // block type, the new innermost dimension must hold whole blocks).
  Tensor reshaped(Shape shape) const;
  // Rows [begin, end) of the outermost dimension, sharing bytes.
  Tensor slice_rows(int64_t begin, int64_t end) const;

 private:
  DType dtype_ = DType::F32;
  Shape shape_;
  const std::byte* data_ = nullptr;
  std::shared_ptr<const void> owner_;
  bool owns_ = false;
};

}  // namespace tapml

#include "core/tensor.h"

#include <cstring>

#include "core/error.h"

namespace tapml {

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  TAPML_REQUIRE(shape_.numel() >= 0, "tensor with negative dimension " + shape_.str());
  auto storage = std::make_shared<std::vector<std::byte>>(nbytes() ? nbytes() : 1);
  data_ = storage->data();
  owner_ = storage;
  owns_ = true;
}

Tensor::Tensor(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> owner)
    : dtype_(dtype),
      shape_(std::move(shape)),
      data_(static_cast<const std::byte*>(data)),
      owner_(std::move(owner)) {}

Tensor Tensor::from_f32(Shape shape, std::span<const float> values) {
  Tensor t(DType::F32, std::move(shape));
  TAPML_REQUIRE(size_t(t.numel()) == values.size(), "from_f32: value count does not match shape");
  std::memcpy(t.mutable_bytes(), values.data(), t.nbytes());
  return t;
}

Tensor Tensor::from_i32(Shape shape, std::span<const int32_t> values) {
  Tensor t(DType::I32, std::move(shape));
  TAPML_REQUIRE(size_t(t.numel()) == values.size(), "from_i32: value count does not match shape");
  std::memcpy(t.mutable_bytes(), values.data(), t.nbytes());
  return t;
}

std::byte* Tensor::mutable_bytes() {
  TAPML_REQUIRE(owns_, "tensor is a read-only borrowed view");
  return const_cast<std::byte*>(data_);
}

float Tensor::get_f32(int64_t i) const {
  switch (dtype_) {
    case DType::F32:
      return data<float>()[i];
    case DType::F16:
      return f16_to_f32(data<uint16_t>()[i]);
    case DType::BF16:
      return bf16_to_f32(data<uint16_t>()[i]);
    case DType::I32:
      return float(data<int32_t>()[i]);
  }
  return 0;
}

std::vector<float> Tensor::to_f32() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  if (dtype_ == DType::F32) {
    std::memcpy(out.data(), data_, nbytes());
  } else {
    for (int64_t i = 0; i < numel(); ++i) out[size_t(i)] = get_f32(i);
  }
  return out;
}

Tensor Tensor::clone() const {
  Tensor t(dtype_, shape_);
  if (nbytes()) std::memcpy(t.mutable_bytes(), data_, nbytes());
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  TAPML_REQUIRE(shape.numel() == numel(), "reshape " + shape_.str() + " to " + shape.str());
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  TAPML_REQUIRE(shape_.rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
                "slice_rows out of range");
  Tensor t = *this;
  size_t row_bytes = shape_[0] ? nbytes() / size_t(shape_[0]) : 0;
  t.data_ = data_ + size_t(begin) * row_bytes;
  t.shape_[0] = end - begin;
  return t;
}

}  // namespace tapml

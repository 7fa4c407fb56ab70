#include "core/tensor.h"

#include <cstring>

#include "core/error.h"
#include "core/quant.h"

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

Tensor Tensor::from_f32_as(DType dtype, Shape shape, std::span<const float> values) {
  Tensor t(dtype, std::move(shape));
  TAPML_REQUIRE(size_t(t.numel()) == values.size(),
                "from_f32_as: value count does not match shape");
  if (std::optional<QuantType> q = block_quant(dtype)) {
    const int64_t n = t.shape_.back(), rows = t.shape_.rows();
    const size_t rb = row_bytes(dtype, n);
    for (int64_t r = 0; r < rows; ++r)
      quantize_row(*q, values.data() + size_t(r * n), t.mutable_bytes() + size_t(r) * rb, n);
    return t;
  }
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float v = values[size_t(i)];
    switch (dtype) {
      case DType::F32:
        t.mutable_data<float>()[i] = v;
        break;
      case DType::F16:
        t.mutable_data<uint16_t>()[i] = f32_to_f16(v);
        break;
      case DType::BF16:
        t.mutable_data<uint16_t>()[i] = f32_to_bf16(v);
        break;
      case DType::I32:
        t.mutable_data<int32_t>()[i] = int32_t(v);
        break;
      default:
        break;
    }
  }
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
    default:
      throw Error("element access on a " + std::string(dtype_name(dtype_)) +
                  " tensor: a block type is read a row at a time (to_f32)");
  }
}

std::vector<float> Tensor::to_f32() const {
  std::vector<float> out(static_cast<size_t>(numel()));
  if (dtype_ == DType::F32) {
    std::memcpy(out.data(), data_, nbytes());
  } else if (std::optional<QuantType> q = block_quant(dtype_)) {
    const int64_t n = shape_.back(), rows = shape_.rows();
    const size_t rb = row_bytes(dtype_, n);
    for (int64_t r = 0; r < rows; ++r)
      dequantize_row(*q, data_ + size_t(r) * rb, out.data() + size_t(r * n), n);
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
  if (is_block(dtype_)) tensor_bytes(dtype_, shape);  // throws if blocks would straddle rows
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  TAPML_REQUIRE(shape_.rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
                "slice_rows out of range");
  TAPML_REQUIRE(
      shape_.rank() >= 2 || !is_block(dtype_),
      "slice_rows of a 1-D " + std::string(dtype_name(dtype_)) + " tensor would cut blocks");
  Tensor t = *this;
  size_t row_bytes = shape_[0] ? nbytes() / size_t(shape_[0]) : 0;
  t.data_ = data_ + size_t(begin) * row_bytes;
  t.shape_[0] = end - begin;
  return t;
}

}  // namespace tapml

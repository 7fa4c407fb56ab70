#include "support/tensors.h"

#include <cstring>

#include "core/dtype.h"

namespace tapml::testing {

Tensor f32_tensor(Shape shape, const std::vector<float>& v, DType dtype) {
  Tensor t(dtype, shape);
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == DType::F32) {
      std::memcpy(t.mutable_bytes() + 4 * i, &v[i], 4);
    } else {
      uint16_t h = dtype == DType::F16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
      std::memcpy(t.mutable_bytes() + 2 * i, &h, 2);
    }
  }
  return t;
}

Tensor i32_tensor(Shape shape, const std::vector<int32_t>& v) {
  Tensor t(DType::I32, shape);
  std::memcpy(t.mutable_bytes(), v.data(), v.size() * 4);
  return t;
}

std::vector<float> normal(std::mt19937& gen, int64_t n, float sd) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(gen);
  return v;
}

std::vector<int32_t> ints(std::mt19937& gen, int64_t n, int32_t lo, int32_t hi) {
  std::uniform_int_distribution<int32_t> d(lo, hi);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = d(gen);
  return v;
}

}  // namespace tapml::testing

// Host tensors for backend tests: from float or int values, and random values to fill them.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "core/tensor.h"

namespace tapml::testing {

// `v` stored as `dtype` (f32, or rounded to f16/bf16).
Tensor f32_tensor(Shape shape, const std::vector<float>& v, DType dtype = DType::F32);
Tensor i32_tensor(Shape shape, const std::vector<int32_t>& v);
// n normal values (mean 0, standard deviation sd), and n integers in [lo, hi].
std::vector<float> normal(std::mt19937& gen, int64_t n, float sd = 1.0f);
std::vector<int32_t> ints(std::mt19937& gen, int64_t n, int32_t lo, int32_t hi);

}  // namespace tapml::testing

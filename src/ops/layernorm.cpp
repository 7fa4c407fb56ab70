// layernorm  (x [T, N] f32, weight [N] f32)  attrs eps  -> out [T, N] f32
//   mean[t] = sum_i x[t, i] / N
//   var[t]  = sum_i (x[t, i] - mean[t])^2 / N      (biased; from the deviations)
//   out[t, i] = (x[t, i] - mean[t]) / sqrt(var[t] + eps) * weight[i]
//   The variance is formed from the deviations, in a second pass over the row: the one-pass
//   E[x^2] - E[x]^2 cancels to nothing in f32 for a row whose mean is large against its
//   spread (mean 1000, spread 1 leaves no digit of the variance), which an example has.
//   Reduction length N. (No bias input: a model with one follows it with `bias`.)
//   A plain two-pass f32 kernel rounds the mean to f32, half an ulp of it: its error grows
//   with mean / spread (2260 u * sqrt(N) at 1e4 +- 1, measured), which the reduction length
//   cannot express; calibrated tests carry it in the noise. Otherwise <= 1.15 sqrt(N) u.
#include <cmath>

#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs& a) {
  const char* op = "layernorm";
  expect_matrix(in[0], op, "x");
  TAPML_EXPECT(in[1].shape == Shape{in[0].shape[1]}, op,
               "weight " + describe(in[1]) + " does not fit x " + describe(in[0]));
  const double eps = a.get("eps");
  TAPML_EXPECT(eps >= 0 && std::isfinite(eps), op, "eps must be finite and non-negative");
  return {in[0]};
}

std::vector<OpExample> examples(std::span<const DType>, std::mt19937_64& rng) {
  auto call = [&](const char* label, int64_t T, int64_t N, double lo, double hi, double eps) {
    return OpExample{
        label,
        {{"eps", eps}},
        {uniform(DType::F32, {T, N}, lo, hi, rng), uniform(DType::F32, {N}, -2, 2, rng)}};
  };
  return {call("N=67 tail", 3, 67, -1, 1, 1e-5),
          call("N=4099 long reduction", 2, 4099, -1, 1, 1e-6),
          // E[x^2] - E[x]^2 in f32 is 1e6 - 1e6 here: a one-pass variance has no digit left.
          call("rows at 1000 +- 1: mean far above the spread", 3, 300, 999, 1001, 1e-5),
          // Variance about 3e-6 against eps 1e-5: a kernel that drops eps is far off.
          call("tiny rows, eps matters", 4, 96, -3e-3, 3e-3, 1e-5),
          call("large values", 2, 200, -3e4, 3e4, 1e-5)};
}

}  // namespace

OpDef define_layernorm() {
  return {Op::LayerNorm, "layernorm", {"x", "weight"},
          {"out"},       {"eps"},     {{DType::F32}, {DType::F32}},
          {-1},          infer,       reduce_cols,
          {4, 4, false}, examples};
}

}  // namespace tapml::ops

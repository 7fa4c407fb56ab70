// rmsnorm  (x [T, D] f32, weight [D] f32|f16|bf16)  attrs eps  -> out [T, D] f32
//   out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight
#include <cmath>

#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs& a) {
  const char* op = "rmsnorm";
  expect_matrix(in[0], op, "x");
  TAPML_EXPECT(in[1].shape == Shape{in[0].shape[1]}, op,
               "weight " + describe(in[1]) + " does not fit x " + describe(in[0]));
  double eps = a.get("eps");
  TAPML_EXPECT(eps >= 0 && std::isfinite(eps), op, "eps must be finite and non-negative");
  return {in[0]};
}

std::vector<OpExample> examples(std::span<const DType> t, std::mt19937_64& rng) {
  auto call = [&](const char* label, int64_t T, int64_t D, double scale, double eps) {
    return OpExample{
        label,
        {{"eps", eps}},
        {uniform(DType::F32, {T, D}, -scale, scale, rng), uniform(t[1], {D}, -2, 2, rng)}};
  };
  return {call("D=67 tail", 3, 67, 1, 1e-5), call("D=4099 long reduction", 2, 4099, 1, 1e-6),
          // Rows whose mean square is near eps: a kernel that drops eps is far off here.
          call("tiny rows, eps matters", 4, 96, 3e-3, 1e-5),
          call("large values", 2, 200, 3e4, 1e-5)};
}

}  // namespace

OpDef define_rmsnorm() {
  return {Op::RmsNorm,   "rmsnorm", {"x", "weight"},
          {"out"},       {"eps"},   {{DType::F32}, kWeightDtypes},
          {-1},          infer,     reduce_cols,
          {4, 4, false}, examples};
}

}  // namespace tapml::ops

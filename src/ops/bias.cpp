// bias  (x [T, N] f32, b [N] f32)  -> out [T, N] f32
//   out[t, i] = x[t, i] + b[i]   (b broadcast over the rows)
//   Correctly rounded in f32, as add.
#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs&) {
  const char* op = "bias";
  expect_matrix(in[0], op, "x");
  TAPML_EXPECT(in[1].shape == Shape{in[0].shape[1]}, op,
               "b " + describe(in[1]) + " does not fit x " + describe(in[0]));
  return {in[0]};
}

std::vector<OpExample> examples(std::span<const DType>, std::mt19937_64& rng) {
  auto call = [&](const char* label, int64_t T, int64_t N, double scale) {
    return OpExample{label,
                     {},
                     {uniform(DType::F32, {T, N}, -scale, scale, rng),
                      uniform(DType::F32, {N}, -scale, scale, rng)}};
  };
  // T > 1 everywhere: a kernel that adds b[t * N + i] (b read as a matrix) is off from row 1.
  return {call("N=67 tail", 3, 67, 1), call("T=5 N=4099", 5, 4099, 1),
          call("large values", 4, 130, 1e30), call("N=1", 7, 1, 1)};
}

}  // namespace

OpDef define_bias() {
  return {Op::Bias, "bias", {"x", "b"},   {"out"},       {},      {{DType::F32}, {DType::F32}},
          {-1},     infer,  no_reduction, {4, 4, false}, examples};
}

}  // namespace tapml::ops

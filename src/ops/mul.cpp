// mul  (a [T, N] f32, b [T, N] f32)  -> out [T, N] f32
//   out = a * b elementwise. Correctly rounded in f32, as add.
#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs&) {
  const char* op = "mul";
  expect_matrix(in[0], op, "a");
  TAPML_EXPECT(in[1].shape == in[0].shape, op,
               "a " + describe(in[0]) + " and b " + describe(in[1]) + " differ in shape");
  return {in[0]};
}

std::vector<OpExample> examples(std::span<const DType>, std::mt19937_64& rng) {
  auto call = [&](const char* label, int64_t T, int64_t N, double scale) {
    return OpExample{label,
                     {},
                     {uniform(DType::F32, {T, N}, -scale, scale, rng),
                      uniform(DType::F32, {T, N}, -scale, scale, rng)}};
  };
  // Products up to 1e36, near the top of the f32 range.
  return {call("N=67 tail", 3, 67, 2), call("T=5 N=4099", 5, 4099, 2),
          call("large values", 2, 130, 1e18), call("small values", 2, 100, 1e-15)};
}

}  // namespace

OpDef define_mul() {
  return {Op::Mul, "mul", {"a", "b"},   {"out"},       {},      {{DType::F32}, {DType::F32}},
          {-1},    infer, no_reduction, {4, 4, false}, examples};
}

}  // namespace tapml::ops

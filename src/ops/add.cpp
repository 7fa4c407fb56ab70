// add  (a [T, D] f32, b [T, D] f32)  -> out [T, D] f32
//   out = a + b (correctly rounded in f32, so only min_tolerance applies).
#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs&) {
  const char* op = "add";
  expect_matrix(in[0], op, "a");
  TAPML_EXPECT(in[0].shape == in[1].shape, op,
               "shapes differ: " + describe(in[0]) + " vs " + describe(in[1]));
  return {in[0]};
}

std::vector<OpExample> examples(std::span<const DType>, std::mt19937_64& rng) {
  auto call = [&](const char* label, int64_t T, int64_t D, double s) {
    return OpExample{
        label,
        {},
        {uniform(DType::F32, {T, D}, -s, s, rng), uniform(DType::F32, {T, D}, -s, s, rng)}};
  };
  return {call("D=67 tail", 3, 67, 1), call("large values", 2, 1031, 1e30)};
}

}  // namespace

OpDef define_add() {
  return {Op::Add, "add", {"a", "b"},   {"out"},       {},      {{DType::F32}, {DType::F32}},
          {-1},    infer, no_reduction, {4, 4, false}, examples};
}

}  // namespace tapml::ops

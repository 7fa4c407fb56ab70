// swiglu  (gate [T, F] f32, up [T, F] f32)  -> out [T, F] f32
//   out = gate * sigmoid(gate) * up
#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs&) {
  const char* op = "swiglu";
  expect_matrix(in[0], op, "gate");
  TAPML_EXPECT(in[0].shape == in[1].shape, op,
               "shapes differ: " + describe(in[0]) + " vs " + describe(in[1]));
  return {in[0]};
}

std::vector<OpExample> examples(std::span<const DType>, std::mt19937_64& rng) {
  auto call = [&](const char* label, int64_t T, int64_t F, double g) {
    return OpExample{
        label,
        {},
        {uniform(DType::F32, {T, F}, -g, g, rng), uniform(DType::F32, {T, F}, -2, 2, rng)}};
  };
  // Gates past +-11.09 overflow an exp held in f16; past +-88.7, an f32 exp.
  return {call("F=67 tail", 3, 67, 4), call("large gates", 2, 130, 30),
          call("gates past f32 exp overflow", 1, 64, 120)};
}

}  // namespace

OpDef define_swiglu() {
  return {
      Op::Swiglu, "swiglu", {"gate", "up"}, {"out"},         {},      {{DType::F32}, {DType::F32}},
      {-1},       infer,    no_reduction,   {16, 16, false}, examples};
}

}  // namespace tapml::ops

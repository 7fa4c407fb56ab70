// sigmoid_gate  (x [T, N] f32, g [T, 1] f32)  -> out [T, N] f32
//   out[t, i] = x[t, i] * sigmoid(g[t, 0]), sigmoid(z) = 1 / (1 + exp(-z)): one gate per
//   row (Qwen2-MoE's shared-expert gate). A kernel forms sigmoid without overflow for large
//   |z| (exp(-z) for z >= 0, exp(z) / (1 + exp(z)) below): the textbook e^z / (1 + e^z) is
//   inf / inf = NaN from z = 89 in f32.
#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs&) {
  const char* op = "sigmoid_gate";
  expect_matrix(in[0], op, "x");
  TAPML_EXPECT(
      in[1].shape == (Shape{in[0].shape[0], 1}), op,
      "g must be [T, 1] with the rows of x " + describe(in[0]) + ", got " + describe(in[1]));
  return {in[0]};
}

std::vector<OpExample> examples(std::span<const DType>, std::mt19937_64& rng) {
  auto call = [&](const char* label, int64_t T, int64_t N, double g_lo, double g_hi) {
    return OpExample{
        label,
        {},
        {uniform(DType::F32, {T, N}, -3, 3, rng), uniform(DType::F32, {T, 1}, g_lo, g_hi, rng)}};
  };
  OpExample extreme = call("gates of +-100 and +-20 beside 0 and 3", 6, 40, 0, 0);
  const float gates[] = {-100, -20, 0, 3, 20, 100};
  for (int t = 0; t < 6; ++t) extreme.inputs[1].mutable_data<float>()[t] = gates[t];
  return {call("N=67 tail", 3, 67, -4, 4), call("T=5 N=4099", 5, 4099, -4, 4), std::move(extreme)};
}

}  // namespace

OpDef define_sigmoid_gate() {
  return {Op::SigmoidGate,
          "sigmoid_gate",
          {"x", "g"},
          {"out"},
          {},
          {{DType::F32}, {DType::F32}},
          {-1},
          infer,
          no_reduction,
          {4, 4, false},
          examples};
}

}  // namespace tapml::ops

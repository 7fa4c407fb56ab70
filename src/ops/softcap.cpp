// softcap  (x [T, N] f32)  attrs cap  -> out [T, N] f32
//   out = cap * tanh(x / cap), cap > 0 (Gemma 2's final logit soft-capping, cap 30).
//   Odd, and x for |x| << cap; it saturates at +-cap, which it reaches in f32 for
//   |x| > 9 cap. Measured error of correct f32 kernels <= 3.5 u (u = 2^-24).
#include <cmath>

#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs& a) {
  const char* op = "softcap";
  expect_matrix(in[0], op, "x");
  const double cap = a.get("cap");
  TAPML_EXPECT(cap > 0 && std::isfinite(cap), op, "cap must be positive and finite");
  return {in[0]};
}

std::vector<OpExample> examples(std::span<const DType>, std::mt19937_64& rng) {
  auto call = [&](const char* label, int64_t T, int64_t N, double lo, double hi, double cap) {
    return OpExample{label, {{"cap", cap}}, {uniform(DType::F32, {T, N}, lo, hi, rng)}};
  };
  return {call("N=67 tail, cap 30", 3, 67, -60, 60, 30),
          call("T=5 N=4099 logits, cap 30", 5, 4099, -40, 40, 30),
          // Saturated: every |x| / cap beyond 9, where tanh is +-1 in f32, and far beyond.
          call("saturated, |x| up to 1e6, cap 50", 2, 130, -1e6, 1e6, 50),
          // tanh(y) ~ y: a kernel that forms it as (e^2y - 1) / (e^2y + 1) loses the digits.
          call("x near 0, cap 30", 2, 100, -1e-3, 1e-3, 30)};
}

}  // namespace

OpDef define_softcap() {
  return {Op::Softcap, "softcap", {"x"},        {"out"},       {"cap"}, {{DType::F32}},
          {-1},        infer,     no_reduction, {8, 8, false}, examples};
}

}  // namespace tapml::ops

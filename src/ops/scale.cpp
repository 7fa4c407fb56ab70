// scale  (x [T, N] f32)  attrs s  -> out [T, N] f32
//   out = x * s, s any finite number (attributes are f64: a kernel that rounds s to f32
//   first is off by up to one more rounding, within the tolerance).
#include <cmath>

#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs& a) {
  const char* op = "scale";
  expect_matrix(in[0], op, "x");
  TAPML_EXPECT(std::isfinite(a.get("s")), op, "s must be finite");
  return {in[0]};
}

std::vector<OpExample> examples(std::span<const DType>, std::mt19937_64& rng) {
  auto call = [&](const char* label, int64_t T, int64_t N, double lo, double hi, double s) {
    return OpExample{label, {{"s", s}}, {uniform(DType::F32, {T, N}, lo, hi, rng)}};
  };
  return {call("N=67 tail, s = 1/sqrt(128)", 3, 67, -2, 2, 1 / std::sqrt(128.0)),
          call("T=5 N=4099, s = -3.7", 5, 4099, -2, 2, -3.7),
          // Gemma scales its embeddings by sqrt(hidden); here products near 1e37.
          call("large values times 48", 2, 130, -2e35, 2e35, 48), call("s = 0", 2, 20, -1, 1, 0)};
}

}  // namespace

OpDef define_scale() {
  return {Op::Scale, "scale", {"x"},        {"out"},       {"s"},   {{DType::F32}},
          {-1},      infer,   no_reduction, {4, 4, false}, examples};
}

}  // namespace tapml::ops

// moe_route  (logits [T, E] f32)  attrs k, norm  -> route [T, E] f32
//   p = softmax(logits[t]) over the E experts. The k largest p are chosen; where several
//   are equal, the lower expert index wins. For a chosen e, route[t, e] = p[e] (norm 0,
//   Qwen2-MoE) or p[e] / (sum of the chosen p) (norm 1, Mixtral); every other route[t, e]
//   is exactly 0, which is what tells moe_ffn to skip the expert. 1 <= k <= E.
//   Softmax is monotonic, so the chosen experts are those of the k largest logits and the
//   ties are exactly the equal logits: a kernel ranks the logits, not its rounded p (two
//   logits 1e-7 apart can round to one p in f32, and the tie rule would then swap them).
//   Reduction length E (the softmax's sum).
#include <cmath>

#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs& a) {
  const char* op = "moe_route";
  expect_matrix(in[0], op, "logits");
  const int64_t k = a.get_int("k"), E = in[0].shape[1];
  TAPML_EXPECT(k >= 1 && k <= E, op,
               "k must be 1.." + std::to_string(E) + " (the experts of logits " + describe(in[0]) +
                   "), got " + std::to_string(k));
  const double norm = a.get("norm");
  TAPML_EXPECT(norm == 0 || norm == 1, op, "norm must be 0 (p as is) or 1 (chosen p sum to 1)");
  return {in[0]};
}

std::vector<OpExample> examples(std::span<const DType>, std::mt19937_64& rng) {
  auto call = [&](std::string label, int64_t T, int64_t E, int64_t k, int norm, double spread) {
    return OpExample{std::move(label),
                     {{"k", double(k)}, {"norm", double(norm)}},
                     {uniform(DType::F32, {T, E}, -spread, spread, rng)}};
  };
  std::vector<OpExample> out = {
      call("Mixtral: E=8, top 2, normalized", 7, 8, 2, 1, 3),
      call("Qwen2-MoE: E=60, top 4, not normalized", 3, 60, 4, 0, 3),
      call("decode: E=67, top 6, normalized", 1, 67, 6, 1, 3),
      call("k = E: every expert", 2, 19, 19, 1, 3),
      // Scores 160 apart: most p underflow f32 (and exp(logit) without the max overflows).
      call("logits of +-80", 4, 8, 2, 0, 80)};
  // Logits on a grid of 0.5, so that most rows tie at the k-th place; row 0 is all equal
  // (the first k experts win), row 1 has three equal maxima for two places.
  OpExample ties = call("ties: the lower expert wins", 6, 16, 2, 0, 2);
  float* l = ties.inputs[0].mutable_data<float>();
  for (int64_t i = 0; i < 6 * 16; ++i) l[i] = std::round(l[i] * 2) / 2;
  for (int64_t e = 0; e < 16; ++e) l[e] = 0.25f, l[16 + e] = -1;
  l[16 + 5] = l[16 + 9] = l[16 + 12] = 1.5f;
  out.push_back(ties);
  ties.label = "ties, normalized";
  ties.attrs.set("norm", 1);
  out.push_back(std::move(ties));
  return out;
}

int64_t reduction(Types in, const Attrs&) { return in[0].shape[1]; }

}  // namespace

OpDef define_moe_route() {
  return {Op::MoeRoute, "moe_route", {"logits"}, {"route"},     {"k", "norm"}, {{DType::F32}},
          {-1},         infer,       reduction,  {4, 4, false}, examples};
}

}  // namespace tapml::ops

// attention  (q [T, H*hd] f32, k [P, KV*hd] f32, v [P, KV*hd] f32)
//            attrs n_heads, n_kv_heads, head_dim, scale  -> out [T, H*hd] f32
//   k/v are the used prefix of the cache: the T query rows sit at absolute positions
//   P-T .. P-1, and row t attends to keys 0 .. P-T+t (causal). Query head h reads KV head
//   h / (H / KV) (grouped-query attention). out = softmax(q k^T * scale) v per head.
//   Its error grows far slower than sqrt(P * head_dim) (the output is an average over keys)
//   while a bug's effect shrinks with P, so the calibrated factor is small.
#include <cmath>

#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs& a) {
  const char* op = "attention";
  for (int i = 0; i < 3; ++i) expect_matrix(in[i], op, i == 0 ? "q" : "k/v");
  int64_t h = positive_attr(a, "n_heads", op), kv = positive_attr(a, "n_kv_heads", op);
  int64_t hd = positive_attr(a, "head_dim", op);
  TAPML_EXPECT(h % kv == 0, op, "n_heads must be a multiple of n_kv_heads");
  TAPML_EXPECT(in[0].shape[1] == h * hd, op,
               "q " + describe(in[0]) + " is not [T, n_heads*head_dim]");
  TAPML_EXPECT(in[1].shape == in[2].shape, op, "k and v differ");
  TAPML_EXPECT(in[1].shape[1] == kv * hd, op,
               "k " + describe(in[1]) + " is not [P, n_kv_heads*head_dim]");
  TAPML_EXPECT(in[1].shape[0] >= in[0].shape[0], op, "fewer keys than query rows");
  TAPML_EXPECT(std::isfinite(a.get("scale")), op, "scale must be finite");
  return {in[0]};
}

int64_t reduction(Types in, const Attrs& a) { return in[1].shape[0] * a.get_int("head_dim"); }

std::vector<OpExample> examples(std::span<const DType>, std::mt19937_64& rng) {
  // qk_scale spreads q and k so that scaled scores reach about qk_scale^2 * sqrt(hd).
  auto call = [&](std::string label, int64_t T, int64_t P, int64_t H, int64_t KV, int64_t hd,
                  double qk) {
    return OpExample{std::move(label),
                     {{"n_heads", double(H)},
                      {"n_kv_heads", double(KV)},
                      {"head_dim", double(hd)},
                      {"scale", 1.0 / std::sqrt(double(hd))}},
                     {uniform(DType::F32, {T, H * hd}, -qk, qk, rng),
                      uniform(DType::F32, {P, KV * hd}, -qk, qk, rng),
                      uniform(DType::F32, {P, KV * hd}, -1, 1, rng)}};
  };
  return {call("decode, GQA 8 heads on 2", 1, 37, 8, 2, 16, 1),
          call("prefill T=P=19, GQA 6 on 3", 19, 19, 6, 3, 8, 1),
          call("decode over a prefix of 1500", 1, 1500, 4, 2, 64, 1),
          call("prefill of 5 rows after 60 cached", 5, 65, 4, 4, 32, 1),
          // Scaled scores of tens, past exp's f16 overflow (11.09), and raw dot products in
          // the hundreds, where an f16 accumulator has lost three decimal digits.
          call("large scores", 3, 40, 4, 2, 128, 7),
          call("one KV head for all", 2, 12, 4, 1, 16, 1),
          // Every width of a vectorized loop over head_dim and a scalar tail; keys past one
          // pass of a 128-wide workgroup.
          call("head_dim 84 over 150 keys", 2, 150, 4, 2, 84, 1),
          // Wider than one pass over the output dimensions of a 128-wide workgroup.
          call("head_dim 256", 1, 30, 4, 2, 256, 1)};
}

}  // namespace

OpDef define_attention() {
  return {Op::Attention,
          "attention",
          {"q", "k", "v"},
          {"out"},
          {"n_heads", "n_kv_heads", "head_dim", "scale"},
          {{DType::F32}, {DType::F32}, {DType::F32}},
          {-1},
          infer,
          reduction,
          {2, 8, false},
          examples};
}

}  // namespace tapml::ops

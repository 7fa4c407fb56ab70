// attention  (q [T, H*hd] f32, k [P, KV*hd] f32|f16, v [P, KV*hd] like k)
//            attrs n_heads, n_kv_heads, head_dim, scale [, window, softcap]
//            -> out [T, H*hd] f32
//   k/v are the used prefix of the cache (f16 for a half-precision cache): the T query rows sit at
//   absolute positions P-T .. P-1, and row t attends to keys 0 .. P-T+t (causal). Query head h
//   reads KV head h / (H / KV) (grouped-query attention). out = softmax(q k^T * scale) v per head.
//   Optional, absent or 0 meaning off:
//   window (an integer): a query at position i sees key j only if j <= i and i - j < window
//     (the sliding window of Mistral, Gemma 2 and Starcoder2, as transformers applies it);
//     rows whose causal prefix is shorter than the window see all of it.
//   softcap (> 0): each scaled score s = scale * q.k becomes softcap * tanh(s / softcap)
//     before the mask and the softmax (Gemma 2, softcap 50).
//   Reduction length: the keys a row can see (P, or the window if smaller) times head_dim.
//   Its error grows far slower than sqrt(P * head_dim) (the output is an average over keys)
//   while a bug's effect shrinks with P, so the calibrated factor is small.
#include <algorithm>
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
  const double window = a.get_or("window", 0);
  TAPML_EXPECT(window >= 0 && window == std::floor(window) && window < 9e15, op,
               "window must be a non-negative integer (0: none)");
  const double softcap = a.get_or("softcap", 0);
  TAPML_EXPECT(softcap >= 0 && std::isfinite(softcap), op,
               "softcap must be finite and non-negative (0: none)");
  return {in[0]};
}

int64_t reduction(Types in, const Attrs& a) {
  int64_t keys = in[1].shape[0];
  if (const int64_t window = int64_t(a.get_or("window", 0)); window > 0)
    keys = std::min(keys, window);
  return std::max<int64_t>(keys, 1) * a.get_int("head_dim");
}

std::vector<OpExample> examples(std::span<const DType> dtypes, std::mt19937_64& rng) {
  // qk_scale spreads q and k so that scaled scores reach about qk_scale^2 * sqrt(hd).
  auto call = [&](std::string label, int64_t T, int64_t P, int64_t H, int64_t KV, int64_t hd,
                  double qk) {
    return OpExample{std::move(label),
                     {{"n_heads", double(H)},
                      {"n_kv_heads", double(KV)},
                      {"head_dim", double(hd)},
                      {"scale", 1.0 / std::sqrt(double(hd))}},
                     {uniform(DType::F32, {T, H * hd}, -qk, qk, rng),
                      uniform(dtypes[1], {P, KV * hd}, -qk, qk, rng),
                      uniform(dtypes[1], {P, KV * hd}, -1, 1, rng)}};
  };
  auto windowed = [&](std::string label, int64_t T, int64_t P, int64_t H, int64_t KV, int64_t hd,
                      double qk, int64_t window, double softcap) {
    OpExample e = call(std::move(label), T, P, H, KV, hd, qk);
    if (window > 0) e.attrs.set("window", double(window));
    if (softcap > 0) e.attrs.set("softcap", softcap);
    return e;
  };
  std::vector<OpExample> out = {
      call("decode, GQA 8 heads on 2", 1, 37, 8, 2, 16, 1),
      call("prefill T=P=19, GQA 6 on 3", 19, 19, 6, 3, 8, 1),
      call("decode over a prefix of 1500", 1, 1500, 4, 2, 64, 1),
      call("prefill of 5 rows after 60 cached", 5, 65, 4, 4, 32, 1),
      // Scaled scores of tens, past exp's f16 overflow (11.09), and raw dot products in
      // the hundreds, where an f16 accumulator has lost three decimal digits.
      call("large scores", 3, 40, 4, 2, 128, 7), call("one KV head for all", 2, 12, 4, 1, 16, 1),
      // Every width of a vectorized loop over head_dim and a scalar tail; keys past one
      // pass of a 128-wide workgroup.
      call("head_dim 84 over 150 keys", 2, 150, 4, 2, 84, 1),
      // Wider than one pass over the output dimensions of a 128-wide workgroup.
      call("head_dim 256", 1, 30, 4, 2, 256, 1)};
  // Added after the others, so that their inputs stay those of earlier seeds.
  // Decode at position 39 with a window of 16: keys 24..39, and key 23 (i - j = 16) is out.
  out.push_back(windowed("window 16, decode over a prefix of 40", 1, 40, 4, 2, 16, 1, 16, 0));
  // Prefill: the first rows see fewer keys than the window, the later ones exactly 7.
  out.push_back(windowed("window 7, prefill T=P=30", 30, 30, 2, 1, 24, 1, 7, 0));
  out.push_back(windowed("window 5, 6 rows after 50 cached", 6, 56, 4, 4, 20, 1, 5, 0));
  out.push_back(windowed("window 1: each row sees itself", 4, 9, 2, 2, 8, 1, 1, 0));
  out.push_back(windowed("window 4096, wider than the prefix", 3, 70, 4, 2, 32, 1, 4096, 0));
  // Scaled scores in the hundreds, capped to +-50: without the cap the softmax is one-hot.
  out.push_back(windowed("softcap 50 on scores in the hundreds", 3, 40, 4, 2, 128, 12, 0, 50));
  out.push_back(windowed("softcap 20 and window 10 (Gemma 2 local)", 6, 33, 4, 2, 36, 4, 10, 20));
  return out;
}

}  // namespace

OpDef define_attention() {
  OpDef d{Op::Attention,
          "attention",
          {"q", "k", "v"},
          {"out"},
          {"n_heads", "n_kv_heads", "head_dim", "scale", "window", "softcap"},
          {{DType::F32}, {DType::F32, DType::F16}, {DType::F32, DType::F16}},
          {-1},
          infer,
          reduction,
          {2, 8, false},
          examples};
  d.optional_attrs = 2;
  d.dtype_follows = {-1, -1, 1};  // an f16 cache holds both k and v
  return d;
}

}  // namespace tapml::ops

// SIMD kernels of the cpu backend, compiled once per instruction set by Highway's
// foreach_target and dispatched at run time to the best one the CPU supports.
//
// SSSE3 adds little over SSE4 and the sizeless SVE/RVV vectors would forbid the arrays of
// accumulators the matmul tiles keep, so those targets are not compiled; that also keeps
// the build short (baseline + SSE4 + AVX2 + AVX-512).
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif

// Highway 1.0 rejects a build whose baseline (e.g. -march=native on Ice Lake or later) is
// AVX3_DL unless that target is also wanted for dynamic dispatch.
#if defined(__AVX512VBMI2__) && !defined(HWY_WANT_AVX3_DL)
#define HWY_WANT_AVX3_DL
#endif

// The include order below is Highway's protocol (foreach_target re-includes this file per
// target before highway.h), so it is kept out of clang-format's include sorting.
// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/kernels.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backends/cpu/kernels.h"
#include "core/dtype.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace tapml::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

// A matmul tile with several x rows keeps kTileT x kTileN accumulators: each weight vector
// loaded serves kTileT x rows, each x vector kTileN weight rows. x86 with AVX-512 has 32
// vector registers: 6 x 4 = 24 accumulators, 10 loads per 24 FMAs (4 x 4 needed 8 per 16, and
// streamed each weight from L2 once per 4 rows instead of 6: on a 16-core Xeon the 125M f32
// prefill went from about 2,400 to 2,700 tok/s at 8 threads). Others have 16: 4 x 2.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr int kTileT = 6;
constexpr int kTileN = 4;
#else
constexpr int kTileT = 4;
constexpr int kTileN = 2;
#endif
// A GEMV (one x row) reads 4 weight rows at once: independent accumulator chains.
constexpr int kGemvN = 4;

// Lanes of the widest vector any target has; sizes the stack buffers of partial vectors.
constexpr size_t kMaxLanes = HWY_MAX_BYTES / sizeof(float);

HWY_INLINE float scalar_weight(const float* p) { return *p; }
HWY_INLINE float scalar_weight(const hwy::float16_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return f16_to_f32(bits);
}
HWY_INLINE float scalar_weight(const hwy::bfloat16_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return bf16_to_f32(bits);
}

// One vector of weights as f32: 16-bit types are widened in-register.
HWY_INLINE VF load_weights(DF df, const float* p) { return hn::LoadU(df, p); }
HWY_INLINE VF load_weights(DF df, const hwy::float16_t* p) {
#if HWY_TARGET == HWY_SCALAR
  return hn::Set(df, scalar_weight(p));  // Highway's scalar widening turns inf/NaN finite
#elif HWY_ARCH_X86 && HWY_TARGET >= HWY_SSE4
  // Without F16C Highway widens in software and maps inf/NaN (exponent 31) to finite
  // values; a weight that is inf must stay inf, or the oracle's Inf/NaN checks go blind.
  const hn::Rebind<hwy::float16_t, DF> dh;
  const hn::Rebind<uint16_t, DF> du16;
  const hn::RebindToUnsigned<DF> du32;
  const auto bits = hn::PromoteTo(du32, hn::LoadU(du16, reinterpret_cast<const uint16_t*>(p)));
  const auto exp_mask = hn::Set(du32, 0x7C00);
  const auto special = hn::Or(
      hn::Or(hn::ShiftLeft<16>(hn::And(bits, hn::Set(du32, 0x8000))), hn::Set(du32, 0x7F800000)),
      hn::ShiftLeft<13>(hn::And(bits, hn::Set(du32, 0x3FF))));
  return hn::IfThenElse(hn::RebindMask(df, hn::Eq(hn::And(bits, exp_mask), exp_mask)),
                        hn::BitCast(df, special), hn::PromoteTo(df, hn::LoadU(dh, p)));
#else
  const hn::Rebind<hwy::float16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, p));
#endif
}
HWY_INLINE VF load_weights(DF df, const hwy::bfloat16_t* p) {
  const hn::Rebind<hwy::bfloat16_t, DF> dh;
  return hn::PromoteTo(df, hn::LoadU(dh, p));
}

HWY_INLINE float sum_lanes(DF df, VF v) { return hn::GetLane(hn::SumOfLanes(df, v)); }

#if HWY_TARGET != HWY_SCALAR
// Adds the 128-bit blocks of v and stores the resulting four lanes.
template <class D>
HWY_INLINE void store_block_sum(D d, hn::Vec<D> v, float* out) {
  if constexpr (hn::MaxLanes(D()) > 4) {
    const hn::Half<D> dh;
    store_block_sum(dh, hn::Add(hn::LowerHalf(dh, v), hn::UpperHalf(dh, v)), out);
  } else {
    hn::StoreU(v, d, out);
  }
}
#endif

// out[i] = sum of the lanes of v[i], for i < n. Groups of four are reduced together by a
// transposing reduction (interleave and add), about a third of the shuffles of reducing
// each vector on its own; this matters for the matmul tiles, which reduce 16 at a time.
template <int n>
HWY_INLINE void sum_lanes_of(DF df, const VF* v, float* out) {
  int i = 0;
#if HWY_TARGET != HWY_SCALAR
  const hn::RepartitionToWide<hn::RebindToUnsigned<DF>> du64;
  for (; i + 4 <= n; i += 4) {
    // Per block: ab = [a0+a2, b0+b2, a1+a3, b1+b3], cd likewise; then pair up 64-bit halves.
    const VF ab =
        hn::Add(hn::InterleaveLower(v[i], v[i + 1]), hn::InterleaveUpper(df, v[i], v[i + 1]));
    const VF cd = hn::Add(hn::InterleaveLower(v[i + 2], v[i + 3]),
                          hn::InterleaveUpper(df, v[i + 2], v[i + 3]));
    const auto ab64 = hn::BitCast(du64, ab), cd64 = hn::BitCast(du64, cd);
    const VF s = hn::Add(hn::BitCast(df, hn::InterleaveLower(ab64, cd64)),
                         hn::BitCast(df, hn::InterleaveUpper(du64, ab64, cd64)));
    store_block_sum(df, s, out + i);
  }
#endif
  for (; i < n; ++i) out[i] = sum_lanes(df, v[i]);
}

// out[t * ldo + r] = dot(x row t, w row r) for RT x rows and RN weight rows, each K long and
// ld apart; with accumulate, added to what out holds.
template <int RT, int RN, class W>
HWY_INLINE void tile(const float* HWY_RESTRICT x, const W* HWY_RESTRICT w, int64_t K, int64_t ld,
                     float* HWY_RESTRICT out, int64_t ldo, bool accumulate) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  VF acc[RT][RN];
  for (int t = 0; t < RT; ++t)
    for (int r = 0; r < RN; ++r) acc[t][r] = hn::Zero(df);
  int64_t k = 0;
  if constexpr (RT * RN <= 4) {
    // Few accumulators: a second set hides the FMA latency.
    VF acc2[RT][RN];
    for (int t = 0; t < RT; ++t)
      for (int r = 0; r < RN; ++r) acc2[t][r] = hn::Zero(df);
    for (; k + 2 * L <= K; k += 2 * L) {
      // One x row (decode) reads each weight once, and on its own a core keeps too few
      // misses in flight to reach the memory's bandwidth: ask for the same columns of the
      // next RN rows (the next tile) into L2, spread over this tile's loop so that the
      // fetches overlap the arithmetic. A burst of prefetches into L1 per tile stalled the
      // core once its fill buffers were full (kernels_bench gemv_cpu2_cold_f16 on a 16-core
      // Xeon: 20-23 GB/s with the burst, 20-36 spread into L2; none at all: 11-14).
      if constexpr (RT == 1)
        for (int r = 0; r < RN; ++r)
          for (int64_t b = 0; b < 2 * L * int64_t(sizeof(W)); b += 64)
            __builtin_prefetch(reinterpret_cast<const char*>(w + (r + RN) * ld + k) + b, 0, 2);
      VF w0[RN], w1[RN];
      for (int r = 0; r < RN; ++r) {
        w0[r] = load_weights(df, w + r * ld + k);
        w1[r] = load_weights(df, w + r * ld + k + L);
      }
      for (int t = 0; t < RT; ++t) {
        const VF x0 = hn::LoadU(df, x + t * ld + k), x1 = hn::LoadU(df, x + t * ld + k + L);
        for (int r = 0; r < RN; ++r) {
          acc[t][r] = hn::MulAdd(x0, w0[r], acc[t][r]);
          acc2[t][r] = hn::MulAdd(x1, w1[r], acc2[t][r]);
        }
      }
    }
    for (int t = 0; t < RT; ++t)
      for (int r = 0; r < RN; ++r) acc[t][r] = hn::Add(acc[t][r], acc2[t][r]);
  }
  for (; k + L <= K; k += L) {
    VF wv[RN];
    for (int r = 0; r < RN; ++r) wv[r] = load_weights(df, w + r * ld + k);
    for (int t = 0; t < RT; ++t) {
      const VF xv = hn::LoadU(df, x + t * ld + k);
      for (int r = 0; r < RN; ++r) acc[t][r] = hn::MulAdd(xv, wv[r], acc[t][r]);
    }
  }
  float sums[RT * RN];
  sum_lanes_of<RT * RN>(df, &acc[0][0], sums);
  for (int t = 0; t < RT; ++t)
    for (int r = 0; r < RN; ++r) {
      float s = sums[t * RN + r];
      for (int64_t kk = k; kk < K; ++kk) s += x[t * ld + kk] * scalar_weight(w + r * ld + kk);
      out[t * ldo + r] = accumulate ? out[t * ldo + r] + s : s;
    }
}

// Columns [n0, n1) of RT x rows, RN weight rows at a time.
template <int RT, int RN, class W>
HWY_INLINE void tile_columns_rt(const float* x, const W* w, int64_t K, int64_t ld, int64_t n0,
                                int64_t n1, float* out, int64_t ldo, bool accumulate) {
  int64_t n = n0;
  for (; n + RN <= n1; n += RN) tile<RT, RN>(x, w + n * ld, K, ld, out + n, ldo, accumulate);
  for (; n < n1; ++n) tile<RT, 1>(x, w + n * ld, K, ld, out + n, ldo, accumulate);
}

// The same for a run-time rt in 1..MaxRT.
template <int MaxRT, int RN, class W>
HWY_INLINE void tile_columns(int rt, const float* x, const W* w, int64_t K, int64_t ld, int64_t n0,
                             int64_t n1, float* out, int64_t ldo, bool accumulate) {
  if constexpr (MaxRT > 1) {
    if (rt < MaxRT)
      return tile_columns<MaxRT - 1, RN>(rt, x, w, K, ld, n0, n1, out, ldo, accumulate);
  }
  tile_columns_rt<MaxRT, RN>(x, w, K, ld, n0, n1, out, ldo, accumulate);
}

// Rows without a transposed x (fewer than kManyRows): take the weights a chunk of rows at a
// time, small enough to stay in L2 while every block of kTileT x rows passes over it, so each
// weight is fetched from memory once. (The figures below are from when this path ran every
// prefill, 128 rows included.)
// 16-bit weights are widened in registers by each tile: widening a chunk into an f32 copy
// once doubled the bytes each tile streams from L2 (e2e_bench on this 2-core AVX-512 VM:
// 125M f16 prefill at one thread about 5-10% slower that way).
// A K longer than kCutK is cut into blocks of at most kBlockK, so that a tile's kTileT x rows
// (24 KB) stay in L1 while the weights stream from L2; later blocks add their partial dot
// products to out. Uncut, a tile over a long K reads both from L2: kernels_bench prefill128
// at one thread on a Zen 5 VM (1 MB L2), K=5632: f32 94-97 -> 135 GFLOP/s, f16 165 -> 175;
// K=2048: f32 118-138 -> 155-162, f16 the same. But on the 16-core Emerald Rapids host (2 MB
// L2), cutting K=2048 bought nothing end to end (125M prefill at 8 threads, six alternating
// rounds, new/old: f32 0.97, f16 0.95, spreads +-10%), so K up to 2048 stays whole.
constexpr int64_t kBlockK = 24 * 1024 / (kTileT * int64_t(sizeof(float)));
constexpr int64_t kCutK = 2048;
template <class W>
void matmul_typed(const MatmulArgs& a, const W* w, int64_t n0, int64_t n1) {
  const int64_t T = a.T, K = a.K, N = a.N;
  if (T == 1) return tile_columns_rt<1, kGemvN>(a.x, w, K, K, n0, n1, a.out, N, false);
  if (T <= kTileT)
    return tile_columns<kTileT, kTileN>(int(T), a.x, w, K, K, n0, n1, a.out, N, false);
  const int64_t lanes = int64_t(hn::Lanes(DF()));
  const int64_t blocks = K > kCutK ? (K + kBlockK - 1) / kBlockK : 1;
  const int64_t kc = blocks == 1 ? K : ((K + blocks - 1) / blocks + lanes - 1) / lanes * lanes;
  constexpr int64_t kChunkBytes = 96 * 1024;
  const int64_t chunk =
      std::max<int64_t>(kTileN, kChunkBytes / (kc * int64_t(sizeof(W))) / kTileN * kTileN);
  for (int64_t c0 = n0; c0 < n1; c0 += chunk) {
    const int64_t c1 = std::min(n1, c0 + chunk);
    for (int64_t k0 = 0; k0 < K; k0 += kc) {
      const int64_t klen = std::min(kc, K - k0);
      for (int64_t t = 0; t < T; t += kTileT) {
        const int rt = int(std::min<int64_t>(kTileT, T - t));
        tile_columns<kTileT, kTileN>(rt, a.x + t * K + k0, w + k0, klen, K, c0, c1, a.out + t * N,
                                     N, k0 > 0);
      }
    }
  }
}

// b is f32, or an f16 cache row widened in registers.
template <class W = float>
HWY_INLINE float dot(const float* HWY_RESTRICT a, const W* HWY_RESTRICT b, int64_t n) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  VF s0 = hn::Zero(df), s1 = hn::Zero(df), s2 = hn::Zero(df), s3 = hn::Zero(df);
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    s0 = hn::MulAdd(hn::LoadU(df, a + i), load_weights(df, b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(df, a + i + L), load_weights(df, b + i + L), s1);
    s2 = hn::MulAdd(hn::LoadU(df, a + i + 2 * L), load_weights(df, b + i + 2 * L), s2);
    s3 = hn::MulAdd(hn::LoadU(df, a + i + 3 * L), load_weights(df, b + i + 3 * L), s3);
  }
  for (; i + L <= n; i += L) s0 = hn::MulAdd(hn::LoadU(df, a + i), load_weights(df, b + i), s0);
  float s = sum_lanes(df, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)));
  for (; i < n; ++i) s += a[i] * scalar_weight(b + i);
  return s;
}

// out[i] = inv * sum_j p[j] * v[j * ldv + i] for i < hd; v f32 or f16.
template <class W>
HWY_INLINE void weighted_rows(const float* HWY_RESTRICT p, int64_t n, const W* HWY_RESTRICT v,
                              int64_t ldv, int64_t hd, float inv, float* HWY_RESTRICT out) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  const VF vinv = hn::Set(df, inv);
  int64_t i = 0;
  for (; i + 4 * L <= hd; i += 4 * L) {
    VF a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
    for (int64_t j = 0; j < n; ++j) {
      const VF pj = hn::Set(df, p[j]);
      const W* vr = v + j * ldv + i;
      a0 = hn::MulAdd(pj, load_weights(df, vr), a0);
      a1 = hn::MulAdd(pj, load_weights(df, vr + L), a1);
      a2 = hn::MulAdd(pj, load_weights(df, vr + 2 * L), a2);
      a3 = hn::MulAdd(pj, load_weights(df, vr + 3 * L), a3);
    }
    hn::StoreU(hn::Mul(a0, vinv), df, out + i);
    hn::StoreU(hn::Mul(a1, vinv), df, out + i + L);
    hn::StoreU(hn::Mul(a2, vinv), df, out + i + 2 * L);
    hn::StoreU(hn::Mul(a3, vinv), df, out + i + 3 * L);
  }
  for (; i + L <= hd; i += L) {
    VF a0 = hn::Zero(df);
    for (int64_t j = 0; j < n; ++j)
      a0 = hn::MulAdd(hn::Set(df, p[j]), load_weights(df, v + j * ldv + i), a0);
    hn::StoreU(hn::Mul(a0, vinv), df, out + i);
  }
  for (; i < hd; ++i) {
    float s = 0;
    for (int64_t j = 0; j < n; ++j) s += p[j] * scalar_weight(v + j * ldv + i);
    out[i] = s * inv;
  }
}

// s[j] = exp(s[j] - mx) for j < n, whole vectors at a time (lanes past n are written too,
// and left out of the sum); returns 1 / the sum: a softmax's weights before that scale.
HWY_INLINE float exp_and_inverse_sum(DF df, float* HWY_RESTRICT s, int64_t n, float mx) {
  const int64_t L = int64_t(hn::Lanes(df));
  const VF vmx = hn::Set(df, mx);
  VF vsum = hn::Zero(df);
  for (int64_t j = 0; j < n; j += L) {
    const VF e = hn::Exp(df, hn::Sub(hn::LoadU(df, s + j), vmx));
    hn::StoreU(e, df, s + j);
    vsum = hn::Add(vsum, hn::IfThenElseZero(hn::FirstN(df, size_t(n - j)), e));
  }
  return 1.0f / sum_lanes(df, vsum);
}

template <class W>
void attention_typed(const AttentionArgs& a, const W* k, const W* v, int64_t task_begin,
                     int64_t task_end) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  const int64_t qw = a.H * a.hd, kw = a.KV * a.hd, group = a.H / a.KV;
  thread_local std::vector<float> scores;
  // Rounded up to whole vectors: the softmax runs over full vectors and masks the rest.
  scores.resize(size_t((a.P + L - 1) / L * L));
  float* s = scores.data();
  for (int64_t task = task_begin; task < task_end; ++task) {
    const int64_t h = task / a.T, t = task % a.T, kh = h / group;
    const int64_t last = a.P - a.T + t;  // causal: keys 0 .. P-T+t
    // The sliding window: keys first .. last, s[j] holds key first + j.
    const int64_t first = a.window > 0 ? std::max<int64_t>(0, last - a.window + 1) : 0;
    const int64_t n = last - first + 1;
    const float* qh = a.q + t * qw + h * a.hd;
    const W* kb = k + first * kw + kh * a.hd;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      s[j] = dot(qh, kb + j * kw, a.hd) * a.scale;
      if (a.softcap > 0) s[j] = a.softcap * std::tanh(s[j] / a.softcap);
      mx = std::max(mx, s[j]);
    }
    const float inv = exp_and_inverse_sum(df, s, n, mx);
    weighted_rows(s, n, v + first * kw + kh * a.hd, kw, a.hd, inv, a.out + t * qw + h * a.hd);
  }
}

// Prefill attention a tile of query rows at a time (see kernels.h): the scores of R rows
// over a run of keys as outer products of q (one broadcast per row) and the transposed keys
// (V vectors of keys), no horizontal sums; softmax per row; then RP rows' outputs at once,
// each value row loaded once for all of them.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr int kScoreV = 2, kPvRows = 4;  // 8 x 2 score and 4 x 4 output accumulators
#else
constexpr int kScoreV = 1, kPvRows = 2;  // of 16 registers: 8 x 1 and 2 x 4
#endif
constexpr int kScoreRows = int(kAttentionTileRows);
static_assert(kScoreV * kMaxLanes <= 2 * kXtAlign,
              "transposed_keys_width leaves room for one step of keys read past P");

// s[r * lds + j] = sum_d qb[r * hd + d] * kt[d * ldkt + j], j < kScoreV * L.
HWY_INLINE void score_tile(const float* HWY_RESTRICT qb, int64_t hd, const float* HWY_RESTRICT kt,
                           int64_t ldkt, float* HWY_RESTRICT s, int64_t lds) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  VF acc[kScoreRows][kScoreV];
  for (int r = 0; r < kScoreRows; ++r)
    for (int v = 0; v < kScoreV; ++v) acc[r][v] = hn::Zero(df);
  for (int64_t d = 0; d < hd; ++d) {
    VF kv[kScoreV];
    for (int v = 0; v < kScoreV; ++v) kv[v] = hn::LoadU(df, kt + d * ldkt + v * L);
    for (int r = 0; r < kScoreRows; ++r) {
      const VF qv = hn::Set(df, qb[r * hd + d]);
      for (int v = 0; v < kScoreV; ++v) acc[r][v] = hn::MulAdd(qv, kv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < kScoreRows; ++r)
    for (int v = 0; v < kScoreV; ++v) hn::StoreU(acc[r][v], df, s + r * lds + v * L);
}

// sums[r * hd + c * L + i] = sum over keys [jb, je) of p[r * lds + j] * v[j * ldv + c * L + i],
// for kPvRows rows and CV vectors of i.
template <int CV, class W>
HWY_INLINE void pv_tile(const float* HWY_RESTRICT p, int64_t lds, int64_t jb, int64_t je,
                        const W* HWY_RESTRICT v, int64_t ldv, float* HWY_RESTRICT sums,
                        int64_t hd) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  VF acc[kPvRows][CV];
  for (int r = 0; r < kPvRows; ++r)
    for (int c = 0; c < CV; ++c) acc[r][c] = hn::Zero(df);
  for (int64_t j = jb; j < je; ++j) {
    VF vv[CV];
    for (int c = 0; c < CV; ++c) vv[c] = load_weights(df, v + j * ldv + c * L);
    for (int r = 0; r < kPvRows; ++r) {
      const VF pr = hn::Set(df, p[r * lds + j]);
      for (int c = 0; c < CV; ++c) acc[r][c] = hn::MulAdd(pr, vv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < kPvRows; ++r)
    for (int c = 0; c < CV; ++c) hn::StoreU(acc[r][c], df, sums + r * hd + c * L);
}

// sum[i] += sum over keys [jb, je) of p[j] * v[j * ldv + i], i < hd: one row's own keys.
template <class W>
HWY_INLINE void pv_row(const float* HWY_RESTRICT p, int64_t jb, int64_t je, const W* HWY_RESTRICT v,
                       int64_t ldv, int64_t hd, float* HWY_RESTRICT sum) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  for (int64_t j = jb; j < je; ++j) {
    const VF pj = hn::Set(df, p[j]);
    int64_t i = 0;
    for (; i + L <= hd; i += L)
      hn::StoreU(hn::MulAdd(pj, load_weights(df, v + j * ldv + i), hn::LoadU(df, sum + i)), df,
                 sum + i);
    for (; i < hd; ++i) sum[i] += p[j] * scalar_weight(v + j * ldv + i);
  }
}

template <class W>
void attention_tiles(const AttentionArgs& a, const W* v, int64_t task_begin, int64_t task_end) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  const int64_t R = kScoreRows, step = kScoreV * L;
  const int64_t qw = a.H * a.hd, kw = a.KV * a.hd, group = a.H / a.KV, hd = a.hd;
  const int64_t blocks = (a.T + R - 1) / R;
  thread_local std::vector<float> qbuf, scores, sums;
  qbuf.resize(size_t(R * hd));
  for (int64_t task = task_begin; task < task_end; ++task) {
    const int64_t h = task / blocks, t0 = task % blocks * R, kh = h / group;
    const int nr = int(std::min(R, a.T - t0));
    // Keys j_lo .. j_hi cover every row's; each row's own are first_r .. last_r.
    auto last_of = [&](int64_t r) { return a.P - a.T + t0 + r; };
    auto first_of = [&](int64_t r) {
      return a.window > 0 ? std::max<int64_t>(0, last_of(r) - a.window + 1) : int64_t(0);
    };
    const int64_t j_lo = first_of(0), n = last_of(nr - 1) - j_lo + 1;
    const int64_t lds = (n + step - 1) / step * step + step;
    scores.resize(size_t(R * lds));
    float* s = scores.data();
    for (int r = 0; r < R; ++r)
      for (int64_t d = 0; d < hd; ++d)
        qbuf[size_t(r * hd + d)] = r < nr ? a.q[(t0 + r) * qw + h * hd + d] : 0.0f;
    const float* kt = a.kt + kh * hd * a.ldkt + j_lo;
    for (int64_t j = 0; j < n; j += step) score_tile(qbuf.data(), hd, kt + j, a.ldkt, s + j, lds);
    float inv[kScoreRows] = {};
    for (int r = 0; r < nr; ++r) {
      float* sr = s + r * lds;
      const int64_t o = first_of(r) - j_lo, m = last_of(r) - first_of(r) + 1;
      // Scaled (and capped) scores of the row's own keys, and their maximum.
      float mx = -INFINITY;
      int64_t j = o;
      if (a.softcap > 0) {
        for (; j < o + m; ++j) {
          const float x = sr[j] * a.scale;
          sr[j] = a.softcap * std::tanh(x / a.softcap);
          mx = std::max(mx, sr[j]);
        }
      } else {
        const VF vscale = hn::Set(df, a.scale);
        VF vmx = hn::Set(df, -INFINITY);
        for (; j + L <= o + m; j += L) {
          const VF x = hn::Mul(hn::LoadU(df, sr + j), vscale);
          hn::StoreU(x, df, sr + j);
          vmx = hn::Max(vmx, x);
        }
        mx = hn::GetLane(hn::MaxOfLanes(df, vmx));
        for (; j < o + m; ++j) {
          sr[j] *= a.scale;
          mx = std::max(mx, sr[j]);
        }
      }
      inv[r] = exp_and_inverse_sum(df, sr + o, m, mx);
    }
    // Values: rows of a group share one pass over the keys all of them see; each row then
    // adds its own keys outside those (a causal edge, a window's start). No row multiplies a
    // value row it must not see, not even by 0 (an inf there would make it NaN).
    const W* vb = v + j_lo * kw + kh * hd;
    sums.resize(size_t(kPvRows * hd));
    for (int r0 = 0; r0 < nr; r0 += kPvRows) {
      const int rows = std::min(kPvRows, nr - r0);
      auto own_begin = [&](int r) { return first_of(r0 + r) - j_lo; };
      auto own_end = [&](int r) { return last_of(r0 + r) - j_lo + 1; };
      int64_t jb = own_begin(rows - 1), je = own_end(0);  // keys every row of the group sees
      const bool shared = jb < je;
      if (!shared) jb = je = 0;
      const float* p = s + r0 * lds;
      float* sum = sums.data();
      int64_t i = 0;
      for (; i + 4 * L <= hd; i += 4 * L) pv_tile<4>(p, lds, jb, je, vb + i, kw, sum + i, hd);
      for (; i + L <= hd; i += L) pv_tile<1>(p, lds, jb, je, vb + i, kw, sum + i, hd);
      for (; i < hd; ++i)
        for (int r = 0; r < rows; ++r) {
          float acc = 0;
          for (int64_t j = jb; j < je; ++j) acc += p[r * lds + j] * scalar_weight(vb + j * kw + i);
          sum[r * hd + i] = acc;
        }
      for (int r = 0; r < rows; ++r) {
        float* sr = sum + r * hd;
        const float* pr = p + r * lds;
        if (shared) {
          pv_row(pr, own_begin(r), jb, vb, kw, hd, sr);
          pv_row(pr, je, own_end(r), vb, kw, hd, sr);
        } else {
          pv_row(pr, own_begin(r), own_end(r), vb, kw, hd, sr);
        }
        float* o = a.out + (t0 + r0 + r) * qw + h * hd;
        const VF vinv = hn::Set(df, inv[r0 + r]);
        int64_t k = 0;
        for (; k + L <= hd; k += L) hn::StoreU(hn::Mul(hn::LoadU(df, sr + k), vinv), df, o + k);
        for (; k < hd; ++k) o[k] = sr[k] * inv[r0 + r];
      }
    }
  }
}

void AttentionTilesRange(const AttentionArgs& a, int64_t task_begin, int64_t task_end) {
  if (a.kv_f16)
    return attention_tiles(a, static_cast<const hwy::float16_t*>(a.v), task_begin, task_end);
  attention_tiles(a, static_cast<const float*>(a.v), task_begin, task_end);
}

// kt rows [row_begin, row_end), row kh * hd + d: key element kh * hd + d of every position,
// widened, zero from P on.
template <class W>
void transpose_keys_typed(const AttentionArgs& a, const W* k, int64_t row_begin, int64_t row_end,
                          float* kt) {
  const int64_t kw = a.KV * a.hd;
  constexpr int64_t kKeys = 16;
  for (int64_t j0 = 0; j0 < a.P; j0 += kKeys) {
    const int64_t j1 = std::min(a.P, j0 + kKeys);
    for (int64_t row = row_begin; row < row_end; ++row)
      for (int64_t j = j0; j < j1; ++j) kt[row * a.ldkt + j] = scalar_weight(k + j * kw + row);
  }
  for (int64_t row = row_begin; row < row_end; ++row)
    std::fill(kt + row * a.ldkt + a.P, kt + (row + 1) * a.ldkt, 0.0f);
}

void TransposeKeys(const AttentionArgs& a, int64_t row_begin, int64_t row_end, float* kt) {
  if (a.kv_f16)
    return transpose_keys_typed(a, static_cast<const hwy::float16_t*>(a.k), row_begin, row_end, kt);
  transpose_keys_typed(a, static_cast<const float*>(a.k), row_begin, row_end, kt);
}

void AttentionRange(const AttentionArgs& a, int64_t task_begin, int64_t task_end) {
  if (a.kv_f16)
    return attention_typed(a, static_cast<const hwy::float16_t*>(a.k),
                           static_cast<const hwy::float16_t*>(a.v), task_begin, task_end);
  attention_typed(a, static_cast<const float*>(a.k), static_cast<const float*>(a.v), task_begin,
                  task_end);
}

// dst[i] = src[i] rounded to the nearest f16 (even on ties), as core's f32_to_f16 does,
// NaN included (one canonical quiet NaN): the cache holds what the reference would store.
void StoreF16(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  // F16C rounds to nearest even, overflows to inf and makes subnormals as IEEE says; only
  // NaN differs (it keeps payload bits), so a vector holding one is redone element-wise.
  const DF df;
  const hn::Rebind<hwy::float16_t, DF> dh;
  const int64_t L = int64_t(hn::Lanes(df));
  for (; i + L <= n; i += L) {
    const VF v = hn::LoadU(df, src + i);
    if (!hn::AllFalse(df, hn::IsNaN(v))) {
      for (int64_t j = i; j < i + L; ++j) dst[j] = f32_to_f16(src[j]);
      continue;
    }
    hn::StoreU(hn::DemoteTo(dh, v), dh, reinterpret_cast<hwy::float16_t*>(dst + i));
  }
#endif
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

template <class W>
HWY_INLINE void widen(const W* src, int64_t n, float* dst) {
  if constexpr (std::is_same_v<W, float>) {
    std::memcpy(dst, src, size_t(n) * sizeof(float));
    return;
  }
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  int64_t i = 0;
  for (; i + L <= n; i += L) hn::StoreU(load_weights(df, src + i), df, dst + i);
  for (; i < n; ++i) dst[i] = scalar_weight(src + i);
}

// Many rows (prefill) with x transposed, a panel of ldxt tokens at a time, xt[k * ldxt + t]
// within it, zero past T (see kernels.h). An outer-product tile: RN weight rows x V vectors
// of tokens in registers, and each step along K broadcasts one weight per row and loads V
// token vectors, RN x V FMAs with no horizontal sums at the end. Per block of K every output
// is one chain of FMAs along k, and the blocks' sums are added in order: the same bits
// whatever the range or the tile.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr int kXtN = 12;  // 12 x 2 = 24 accumulators of the 32 registers
#else
constexpr int kXtN = 6;                  // 6 x 2 = 12 of 16
#endif
static_assert(kManyRowsUnit % kXtN == 0, "a split unit holds whole tiles");

// A block of K is at most kXtK long. The tile's weight rows are copied (16-bit ones widened)
// into a buffer kXtLd floats apart: a stride known when compiling lets one pointer address
// every row (with twelve run-time row pointers the compiler spilled them and reloaded one per
// FMA), and the extra cache line keeps the rows out of one L1 set.
constexpr int64_t kXtK = 1024, kXtLd = kXtK + 16;

// The next tile's weight rows (rows of them, ld bytes apart, k_bytes per k), fetched into L2
// while this tile computes; p null for none. Copied only when needed, the rows came from
// memory with the core idle (kernels_bench prefill128_cpu1_f32 on a Zen 5 VM, K=5632:
// 27 -> 19 ms).
struct Prefetch {
  const char* p = nullptr;
  int64_t ld = 0, k_bytes = 0;
  int rows = 0;
};

template <int RN, int V>
HWY_INLINE void xt_tile(const float* HWY_RESTRICT w, const float* HWY_RESTRICT xt, int64_t ldxt,
                        int64_t kc, int64_t nt, float* HWY_RESTRICT out, int64_t ldo,
                        bool accumulate, const Prefetch& pf) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  VF acc[RN][V];
  for (int r = 0; r < RN; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = hn::Zero(df);
  for (int64_t k = 0; k < kc; ++k) {
    if (pf.p && k % 16 == 0)
      for (int r = 0; r < pf.rows; ++r) __builtin_prefetch(pf.p + r * pf.ld + k * pf.k_bytes, 0, 2);
    VF xv[V];
    for (int v = 0; v < V; ++v) xv[v] = hn::LoadU(df, xt + k * ldxt + v * L);
    for (int r = 0; r < RN; ++r) {
      const VF wv = hn::Set(df, w[r * kXtLd + k]);
      for (int v = 0; v < V; ++v) acc[r][v] = hn::MulAdd(wv, xv[v], acc[r][v]);
    }
  }
  // Back to out's layout, token t of the tile being row t of out: through a buffer, so that
  // out is written a row (RN outputs side by side) at a time. Written straight from the
  // registers, a column of out's rows a whole row apart thrashed one L1 set (kernels_bench
  // prefill128_cpu1_f32 on a Zen 5 VM, K=768 N=2048: 2.7-2.8 ms, through the buffer 2.0-2.1).
  HWY_ALIGN float cols[RN][V * kMaxLanes] = {};  // (zeroed: the compiler cannot see nt <= V * L)
  for (int r = 0; r < RN; ++r)
    for (int v = 0; v < V; ++v) hn::Store(acc[r][v], df, cols[r] + v * L);
  for (int64_t t = 0; t < nt; ++t) {
    float* o = out + t * ldo;
    if (accumulate)
      for (int r = 0; r < RN; ++r) o[r] += cols[r][t];
    else
      for (int r = 0; r < RN; ++r) o[r] = cols[r][t];
  }
}

// The tiles of rn (1..MaxRN) weight rows over tokens [0, nt) of one block of xt.
template <int MaxRN>
HWY_INLINE void xt_rows(int rn, const float* w, const float* xt, int64_t ldxt, int64_t kc,
                        int64_t nt, float* out, int64_t ldo, bool accumulate, Prefetch pf) {
  if constexpr (MaxRN > 1) {
    if (rn < MaxRN) return xt_rows<MaxRN - 1>(rn, w, xt, ldxt, kc, nt, out, ldo, accumulate, pf);
  }
  // The first tile of tokens (over the whole block of K) fetches the next rows.
  const int64_t L = int64_t(hn::Lanes(DF()));
  int64_t t = 0;
  for (; t + L < nt; t += 2 * L) {
    xt_tile<MaxRN, 2>(w, xt + t, ldxt, kc, std::min(2 * L, nt - t), out + t * ldo, ldo, accumulate,
                      pf);
    pf.p = nullptr;
  }
  if (t < nt) xt_tile<MaxRN, 1>(w, xt + t, ldxt, kc, nt - t, out + t * ldo, ldo, accumulate, pf);
}

// Blocks of K and of tokens sized so that one block of xt (kc x tb floats) stays in L2 while
// every tile of weight rows passes over it; 16-bit weights are widened a tile of rows at a
// time into a buffer that serves all the block's tokens.
template <class W>
void matmul_xt(const MatmulArgs& a, const W* w, int64_t n0, int64_t n1) {
  const int64_t T = a.T, K = a.K, N = a.N;
  constexpr int64_t kBlockFloats = 128 * 1024;
  const int64_t tb = a.ldxt;  // a panel of tokens
  const int64_t kmax = std::min(kXtK, kBlockFloats / tb);
  const int64_t blocks = (K + kmax - 1) / kmax;
  const int64_t kc = (K + blocks - 1) / blocks;
  thread_local std::vector<float> wide;
  wide.resize(size_t(kXtN * kXtLd));
  for (int64_t k0 = 0; k0 < K; k0 += kc) {
    const int64_t klen = std::min(kc, K - k0);
    for (int64_t t0 = 0; t0 < T; t0 += tb) {
      const int64_t nt = std::min(tb, T - t0);
      for (int64_t n = n0; n < n1; n += kXtN) {
        const int rn = int(std::min<int64_t>(kXtN, n1 - n));
        for (int r = 0; r < rn; ++r) widen(w + (n + r) * K + k0, klen, wide.data() + r * kXtLd);
        Prefetch pf;
        if (n + kXtN < n1)
          pf = {reinterpret_cast<const char*>(w + (n + kXtN) * K + k0), K * int64_t(sizeof(W)),
                int64_t(sizeof(W)), int(std::min<int64_t>(kXtN, n1 - n - kXtN))};
        xt_rows<kXtN>(rn, wide.data(), a.xt + t0 * K + k0 * tb, tb, klen, nt, a.out + t0 * N + n, N,
                      k0 > 0, pf);
      }
    }
  }
}

// The outer-product kernel when the caller transposed x, the dot-product tiles otherwise.
template <class W>
void matmul_weights(const MatmulArgs& a, const W* w, int64_t n0, int64_t n1) {
  if (a.xt) return matmul_xt(a, w, n0, n1);
  matmul_typed(a, w, n0, n1);
}

void MatmulRange(const MatmulArgs& a, int64_t n0, int64_t n1) {
  switch (a.wtype) {
    case WeightType::F32:
      return matmul_weights(a, static_cast<const float*>(a.w), n0, n1);
    case WeightType::F16:
      return matmul_weights(a, static_cast<const hwy::float16_t*>(a.w), n0, n1);
    case WeightType::BF16:
      return matmul_weights(a, static_cast<const hwy::bfloat16_t*>(a.w), n0, n1);
  }
}

void ConvertToF32(const void* src, WeightType type, int64_t n, float* dst) {
  switch (type) {
    case WeightType::F32:
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case WeightType::F16:
      return widen(static_cast<const hwy::float16_t*>(src), n, dst);
    case WeightType::BF16:
      return widen(static_cast<const hwy::bfloat16_t*>(src), n, dst);
  }
}

float SumSquares(const float* x, int64_t n) { return dot(x, x, n); }

void ScaleMul(const float* x, float s, const float* w, float* out, int64_t n) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  const VF vs = hn::Set(df, s);
  int64_t i = 0;
  for (; i + L <= n; i += L)
    hn::StoreU(hn::Mul(hn::Mul(hn::LoadU(df, x + i), vs), hn::LoadU(df, w + i)), df, out + i);
  for (; i < n; ++i) out[i] = x[i] * s * w[i];
}

HWY_INLINE VF swiglu_vec(DF df, VF g, VF u) {
  // exp(-g) overflows f32 beyond 88; clamping there still yields ~0 for such g.
  const VF e = hn::Exp(df, hn::Min(hn::Neg(g), hn::Set(df, 88.0f)));
  return hn::Mul(hn::Div(g, hn::Add(hn::Set(df, 1.0f), e)), u);
}

void Swiglu(const float* g, const float* u, float* out, int64_t n) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  int64_t i = 0;
  for (; i + L <= n; i += L)
    hn::StoreU(swiglu_vec(df, hn::LoadU(df, g + i), hn::LoadU(df, u + i)), df, out + i);
  if (i < n) {
    // The tail goes through the same vector code, so every element is computed alike.
    HWY_ALIGN float gb[kMaxLanes] = {}, ub[kMaxLanes] = {}, ob[kMaxLanes];
    std::memcpy(gb, g + i, size_t(n - i) * 4);
    std::memcpy(ub, u + i, size_t(n - i) * 4);
    hn::Store(swiglu_vec(df, hn::Load(df, gb), hn::Load(df, ub)), df, ob);
    std::memcpy(out + i, ob, size_t(n - i) * 4);
  }
}

void Add(const float* a, const float* b, float* out, int64_t n) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  int64_t i = 0;
  for (; i + L <= n; i += L)
    hn::StoreU(hn::Add(hn::LoadU(df, a + i), hn::LoadU(df, b + i)), df, out + i);
  for (; i < n; ++i) out[i] = a[i] + b[i];
}

// 0.5 * erfc(|x| / sqrt 2), relative error about 6 * 2^-24 at most where FMA is native: erfc(a) =
// exp(-a^2) (1 + p(q)) / (1 + 2a), with p a degree-10 Chebyshev fit over q = (a - 2) / (a + 2)
// for a in [0, 10.1] (error 1.2e-8; beyond 10.1 erfc underflows f32), and a^2 = x^2 / 2
// split into x*x and its FMA residual so that its rounding does not become a relative error
// of x^2 * 2^-24 through the exp.
HWY_INLINE VF half_erfc(DF df, VF x) {
  static constexpr float kP[] = {2.166778904e-05f,  -3.730590688e-04f, -1.251374837e-03f,
                                 1.282442478e-03f,  8.639491163e-03f,  -8.047966287e-03f,
                                 -5.420572311e-02f, 1.640536487e-01f,  -1.660313010e-01f,
                                 -9.276391566e-02f, 2.769784033e-01f};
  const VF one = hn::Set(df, 1.0f), two = hn::Set(df, 2.0f), half = hn::Set(df, 0.5f);
  // Past |x| = 16 the result is 0 in f32 anyway; the clamp keeps x*x finite.
  const VF ax = hn::Min(hn::Abs(x), hn::Set(df, 16.0f));
  const VF a = hn::Min(hn::Mul(ax, hn::Set(df, 0.70710678118654752f)), hn::Set(df, 10.1f));
  const VF q = hn::Div(hn::Sub(a, two), hn::Add(a, two));
  VF p = hn::Set(df, kP[0]);
  for (size_t i = 1; i < sizeof kP / sizeof kP[0]; ++i) p = hn::MulAdd(p, q, hn::Set(df, kP[i]));
  const VF r = hn::Div(hn::Add(one, p), hn::MulAdd(two, a, one));
  const VF s = hn::Mul(ax, ax);
  const VF residual = hn::MulSub(ax, ax, s);  // 0 where MulAdd is not fused
  VF e = hn::Exp(df, hn::Mul(hn::Neg(half), s));
  e = hn::NegMulAdd(e, hn::Mul(half, residual), e);  // exp(-s/2) * (1 - residual/2)
  return hn::Mul(hn::Mul(half, r), e);
}

HWY_INLINE VF gelu_erf_vec(DF df, VF x) {
  const VF h = half_erfc(df, x);
  return hn::Mul(x, hn::IfThenElse(hn::Lt(x, hn::Zero(df)), h, hn::Sub(hn::Set(df, 1.0f), h)));
}

// x / (1 + exp(-2z)) = 0.5 x (1 + tanh z), z = sqrt(2/pi) (x + 0.044715 x^3).
HWY_INLINE VF gelu_tanh_vec(DF df, VF x) {
  const VF c1 = hn::Set(df, -2.0f * 0.79788456080286535588f);
  const VF c3 = hn::Set(df, -2.0f * 0.79788456080286535588f * 0.044715f);
  const VF minus_2z = hn::Mul(x, hn::MulAdd(c3, hn::Mul(x, x), c1));
  // Highway's Exp is garbage past 88.7 (NaN or finite, not +inf); clamped there, the result
  // is still ~0 for such x.
  const VF e = hn::Exp(df, hn::Min(minus_2z, hn::Set(df, 88.0f)));
  return hn::Div(x, hn::Add(hn::Set(df, 1.0f), e));
}

template <class Fn>
HWY_INLINE void map_unary(const float* x, float* out, int64_t n, Fn fn) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  int64_t i = 0;
  for (; i + L <= n; i += L) hn::StoreU(fn(df, hn::LoadU(df, x + i)), df, out + i);
  if (i < n) {
    // The tail goes through the same vector code, so every element is computed alike.
    HWY_ALIGN float xb[kMaxLanes] = {}, ob[kMaxLanes];
    std::memcpy(xb, x + i, size_t(n - i) * 4);
    hn::Store(fn(df, hn::Load(df, xb)), df, ob);
    std::memcpy(out + i, ob, size_t(n - i) * 4);
  }
}

void Gelu(const float* x, bool tanh_form, float* out, int64_t n) {
  if (tanh_form)
    map_unary(x, out, n, [](DF df, VF v) { return gelu_tanh_vec(df, v); });
  else
    map_unary(x, out, n, [](DF df, VF v) { return gelu_erf_vec(df, v); });
}

HWY_INLINE float sum(const float* HWY_RESTRICT x, int64_t n) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  VF s0 = hn::Zero(df), s1 = hn::Zero(df), s2 = hn::Zero(df), s3 = hn::Zero(df);
  int64_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    s0 = hn::Add(s0, hn::LoadU(df, x + i));
    s1 = hn::Add(s1, hn::LoadU(df, x + i + L));
    s2 = hn::Add(s2, hn::LoadU(df, x + i + 2 * L));
    s3 = hn::Add(s3, hn::LoadU(df, x + i + 3 * L));
  }
  for (; i + L <= n; i += L) s0 = hn::Add(s0, hn::LoadU(df, x + i));
  float s = sum_lanes(df, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)));
  for (; i < n; ++i) s += x[i];
  return s;
}

// *s1 = sum of d[i], *s2 = sum of d[i]^2, d[i] = x[i] - m.
HWY_INLINE void deviation_sums(const float* HWY_RESTRICT x, float m, int64_t n, float* s1,
                               float* s2) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  const VF vm = hn::Set(df, m);
  VF a0 = hn::Zero(df), a1 = hn::Zero(df), q0 = hn::Zero(df), q1 = hn::Zero(df);
  int64_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    const VF d0 = hn::Sub(hn::LoadU(df, x + i), vm), d1 = hn::Sub(hn::LoadU(df, x + i + L), vm);
    a0 = hn::Add(a0, d0);
    a1 = hn::Add(a1, d1);
    q0 = hn::MulAdd(d0, d0, q0);
    q1 = hn::MulAdd(d1, d1, q1);
  }
  for (; i + L <= n; i += L) {
    const VF d0 = hn::Sub(hn::LoadU(df, x + i), vm);
    a0 = hn::Add(a0, d0);
    q0 = hn::MulAdd(d0, d0, q0);
  }
  float a = sum_lanes(df, hn::Add(a0, a1)), q = sum_lanes(df, hn::Add(q0, q1));
  for (; i < n; ++i) {
    const float d = x[i] - m;
    a += d;
    q += d * d;
  }
  *s1 = a;
  *s2 = q;
}

// The mean as m0 + lo: m0 the f32 mean, lo the mean of the deviations from it (the
// corrected two-pass algorithm). For a row whose mean is far above its spread (1000 +- 1),
// m0 alone is off by up to half an ulp of 1000, 3e-5 of the spread, in every output; x - m0
// is exact there (Sterbenz) and lo carries the rest. The variance is that of x - m0 less
// lo^2, in f64.
void LayernormRow(const float* x, const float* w, double eps, float* out, int64_t n) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  const float m0 = sum(x, n) / float(n);
  float s1, s2;
  deviation_sums(x, m0, n, &s1, &s2);
  const double lo = double(s1) / double(n);
  const double var = std::max(0.0, double(s2) / double(n) - lo * lo);
  const float inv = float(1.0 / std::sqrt(var + eps)), flo = float(lo);
  const VF vm = hn::Set(df, m0), vlo = hn::Set(df, flo), vinv = hn::Set(df, inv);
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const VF d = hn::Sub(hn::Sub(hn::LoadU(df, x + i), vm), vlo);
    hn::StoreU(hn::Mul(hn::Mul(d, vinv), hn::LoadU(df, w + i)), df, out + i);
  }
  for (; i < n; ++i) out[i] = ((x[i] - m0) - flo) * inv * w[i];
}

void Mul(const float* a, const float* b, float* out, int64_t n) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  int64_t i = 0;
  for (; i + L <= n; i += L)
    hn::StoreU(hn::Mul(hn::LoadU(df, a + i), hn::LoadU(df, b + i)), df, out + i);
  for (; i < n; ++i) out[i] = a[i] * b[i];
}

void Scale(const float* x, float s, float* out, int64_t n) {
  const DF df;
  const int64_t L = int64_t(hn::Lanes(df));
  const VF vs = hn::Set(df, s);
  int64_t i = 0;
  for (; i + L <= n; i += L) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), vs), df, out + i);
  for (; i < n; ++i) out[i] = x[i] * s;
}

// Highway's Tanh is 1 beyond |y| = 18.7 and goes through expm1, so it keeps tanh(y) ~ y near 0.
void Softcap(const float* x, float cap, float* out, int64_t n) {
  map_unary(x, out, n, [cap](DF df, VF v) {
    const VF c = hn::Set(df, cap);
    return hn::Mul(c, hn::Tanh(df, hn::Div(v, c)));
  });
}

const char* SimdTarget() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace tapml::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace tapml::cpu {

HWY_EXPORT(MatmulRange);
HWY_EXPORT(AttentionRange);
HWY_EXPORT(AttentionTilesRange);
HWY_EXPORT(TransposeKeys);
HWY_EXPORT(StoreF16);
HWY_EXPORT(ConvertToF32);
HWY_EXPORT(SumSquares);
HWY_EXPORT(ScaleMul);
HWY_EXPORT(Swiglu);
HWY_EXPORT(Add);
HWY_EXPORT(Gelu);
HWY_EXPORT(LayernormRow);
HWY_EXPORT(Mul);
HWY_EXPORT(Scale);
HWY_EXPORT(Softcap);
HWY_EXPORT(SimdTarget);

void matmul_range(const MatmulArgs& a, int64_t n_begin, int64_t n_end) {
  HWY_DYNAMIC_DISPATCH(MatmulRange)(a, n_begin, n_end);
}
void attention_range(const AttentionArgs& a, int64_t task_begin, int64_t task_end) {
  HWY_DYNAMIC_DISPATCH(AttentionRange)(a, task_begin, task_end);
}
void attention_tiles_range(const AttentionArgs& a, int64_t task_begin, int64_t task_end) {
  HWY_DYNAMIC_DISPATCH(AttentionTilesRange)(a, task_begin, task_end);
}
void transpose_keys(const AttentionArgs& a, int64_t row_begin, int64_t row_end, float* kt) {
  HWY_DYNAMIC_DISPATCH(TransposeKeys)(a, row_begin, row_end, kt);
}
int64_t transposed_keys_width(int64_t P) {
  return (P + 2 * kXtAlign + kXtAlign - 1) / kXtAlign * kXtAlign;
}
void store_f16(const float* src, int64_t n, uint16_t* dst) {
  HWY_DYNAMIC_DISPATCH(StoreF16)(src, n, dst);
}
void convert_to_f32(const void* src, WeightType type, int64_t n, float* dst) {
  HWY_DYNAMIC_DISPATCH(ConvertToF32)(src, type, n, dst);
}
float sum_squares(const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(SumSquares)(x, n); }
void scale_mul(const float* x, float s, const float* w, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(ScaleMul)(x, s, w, out, n);
}
void swiglu(const float* g, const float* u, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(Swiglu)(g, u, out, n);
}
void add(const float* a, const float* b, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(Add)(a, b, out, n);
}
void gelu(const float* x, bool tanh_form, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(Gelu)(x, tanh_form, out, n);
}
void layernorm_row(const float* x, const float* w, double eps, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(LayernormRow)(x, w, eps, out, n);
}
void mul(const float* a, const float* b, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(Mul)(a, b, out, n);
}
void scale(const float* x, float s, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(Scale)(x, s, out, n);
}
void softcap(const float* x, float cap, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(Softcap)(x, cap, out, n);
}
const char* simd_target() { return HWY_DYNAMIC_DISPATCH(SimdTarget)(); }

int64_t transposed_width(int64_t T) {
  return std::min(kXtPanel, (T + kXtAlign - 1) / kXtAlign * kXtAlign);
}

int64_t transposed_floats(int64_t T, int64_t K) {
  const int64_t w = transposed_width(T);
  return (T + w - 1) / w * K * w;
}

void transpose_rows(const float* x, int64_t T, int64_t K, int64_t k0, int64_t k1, float* xt,
                    int64_t ldxt) {
  for (int64_t t0 = 0; t0 < T; t0 += ldxt) {
    float* panel = xt + t0 * K;  // (t0 / ldxt) * K * ldxt
    const int64_t nt = std::min(ldxt, T - t0);
    for (int64_t kb = k0; kb < k1; kb += kTransposeStrip) {
      const int64_t ke = std::min(k1, kb + kTransposeStrip);
      for (int64_t t = 0; t < nt; ++t)
        for (int64_t k = kb; k < ke; ++k) panel[k * ldxt + t] = x[(t0 + t) * K + k];
      for (int64_t k = kb; k < ke; ++k)
        std::fill(panel + k * ldxt + nt, panel + (k + 1) * ldxt, 0.0f);
    }
  }
}

}  // namespace tapml::cpu
#endif  // HWY_ONCE

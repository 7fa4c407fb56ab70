// The cpu backend's matmul with a quantized weight, computed as ggml computes it: the
// activations quantized to 8 bits per block (activations_as_q8: Q8_0 blocks for the legacy
// types, Q8_K for the K-quants), integer dot products per 32 values, one float
// multiply-add per block. The oracle allows the error this adds (docs/oracle.md, "Quantized
// weights").
//
// A weight row is unpacked once per call and row into 16-bit integers that fold in the
// K-quants' sub-block scales (|value| <= 4096, so a 32-value dot product with |x| <= 128
// stays exact in 32 bits), a float scale per 32 values and, for the types with a minimum, a
// float offset per 16 values; every token row of the call then reads the unpacked row.
// Compiled once per instruction set by Highway, like kernels.cpp.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif
// AVX3_DL (Ice Lake and later) is compiled too: its VNNI multiplies the 8-bit values.
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL
#endif

// clang-format off
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/quant_kernels.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "backends/cpu/kernels.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/quant.h"
// clang-format on

HWY_BEFORE_NAMESPACE();
namespace tapml::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using namespace quant;

// One weight row unpacked: w[k] = s[k / 32] * q[k] + m[k / 16] (m only when has_min).
struct Row {
  int16_t* q;
  float* s;
  float* m;
};

// An f16 scale as f32 (exact either way); F16C's one instruction where the target has it.
inline float half(uint16_t h) {
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
  return _cvtsh_ss(h);
#else
  return f16_to_f32(h);
#endif
}

inline void block(const BlockQ4_0& b, Row r) {
  for (int j = 0; j < 16; ++j) {
    r.q[j] = int16_t((b.qs[j] & 0xF) - 8);
    r.q[j + 16] = int16_t((b.qs[j] >> 4) - 8);
  }
  r.s[0] = half(b.d);
}
inline void block(const BlockQ4_1& b, Row r) {
  for (int j = 0; j < 16; ++j) {
    r.q[j] = int16_t(b.qs[j] & 0xF);
    r.q[j + 16] = int16_t(b.qs[j] >> 4);
  }
  r.s[0] = half(b.d);
  r.m[0] = r.m[1] = half(b.m);
}
inline void block(const BlockQ5_0& b, Row r) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    r.q[j] = int16_t(((b.qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - 16);
    r.q[j + 16] = int16_t(((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
  }
  r.s[0] = half(b.d);
}
inline void block(const BlockQ5_1& b, Row r) {
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < 16; ++j) {
    r.q[j] = int16_t((b.qs[j] & 0xF) | (((qh >> j) & 1) << 4));
    r.q[j + 16] = int16_t((b.qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
  }
  r.s[0] = half(b.d);
  r.m[0] = r.m[1] = half(b.m);
}
inline void block(const BlockQ8_0& b, Row r) {
  for (int j = 0; j < 32; ++j) r.q[j] = b.qs[j];
  r.s[0] = half(b.d);
}
// Q2_K and Q3_K: sixteen groups of 16 in the order of two halves of 128, four 2-bit planes
// of the same 32 bytes each, two groups per plane.
inline void block(const BlockQ2_K& b, Row r) {
  const float dmin = half(b.dmin);
  const uint8_t* q = b.qs;
  int g = 0;
  for (int n = 0; n < kQK_K; n += 128, q += 32)
    for (int shift = 0; shift < 8; shift += 2)
      for (int part = 0; part < 2; ++part, ++g) {
        const int sc = b.scales[g] & 0xF;
        for (int l = 0; l < 16; ++l)
          r.q[16 * g + l] = int16_t(sc * ((q[l + 16 * part] >> shift) & 3));
        r.m[g] = -dmin * float(b.scales[g] >> 4);
      }
  const float d = half(b.d);
  for (int i = 0; i < 8; ++i) r.s[i] = d;
}
inline void block(const BlockQ3_K& b, Row r) {
  const uint8_t* q = b.qs;
  int g = 0;
  uint8_t mask = 1;
  for (int n = 0; n < kQK_K; n += 128, q += 32)
    for (int shift = 0; shift < 8; shift += 2, mask = uint8_t(mask << 1))
      for (int part = 0; part < 2; ++part, ++g) {
        const int sc = q3_k_scale(b.scales, g) - 32;
        for (int l = 0; l < 16; ++l) {
          const int i = l + 16 * part;
          r.q[16 * g + l] = int16_t(sc * (((q[i] >> shift) & 3) - ((b.hmask[i] & mask) ? 0 : 4)));
        }
      }
  const float d = half(b.d);
  for (int i = 0; i < 8; ++i) r.s[i] = d;
}
// Q4_K and Q5_K: four chunks of 64, the low nibbles of 32 bytes (group 2c) then the high ones;
// Q5_K's fifth bit of group g's element l is bit g of qh[l] (qh null for Q4_K). Loops with
// constant shifts over 32 bytes, so that the compiler vectorizes them.
template <class B>
inline void k4_block(const B& b, const uint8_t* qh, Row r) {
  const float d = half(b.d), dmin = half(b.dmin);
  for (int c = 0; c < 4; ++c) {
    uint8_t sc0, mn0, sc1, mn1;
    scale_min_k4(2 * c, b.scales, sc0, mn0);
    scale_min_k4(2 * c + 1, b.scales, sc1, mn1);
    const uint8_t* q = b.qs + 32 * c;
    int16_t* y = r.q + 64 * c;
    if (qh) {
      const int lo = 2 * c, hi = 2 * c + 1;
      for (int l = 0; l < 32; ++l)
        y[l] = int16_t(sc0 * ((q[l] & 0xF) | (((qh[l] >> lo) & 1) << 4)));
      for (int l = 0; l < 32; ++l)
        y[l + 32] = int16_t(sc1 * ((q[l] >> 4) | (((qh[l] >> hi) & 1) << 4)));
    } else {
      for (int l = 0; l < 32; ++l) y[l] = int16_t(sc0 * (q[l] & 0xF));
      for (int l = 0; l < 32; ++l) y[l + 32] = int16_t(sc1 * (q[l] >> 4));
    }
    r.m[4 * c] = r.m[4 * c + 1] = -dmin * float(mn0);
    r.m[4 * c + 2] = r.m[4 * c + 3] = -dmin * float(mn1);
  }
  for (int i = 0; i < 8; ++i) r.s[i] = d;
}
inline void block(const BlockQ4_K& b, Row r) { k4_block(b, nullptr, r); }
inline void block(const BlockQ5_K& b, Row r) { k4_block(b, b.qh, r); }

// 16 Q6_K values: the low 4 bits from ql (its low nibbles, or its high ones when kHighNibble),
// the top 2 from qh at bit kShift, minus 32, times the group's scale.
template <bool kHighNibble, int kShift>
HWY_INLINE void q6_k_group(const uint8_t* HWY_RESTRICT ql, const uint8_t* HWY_RESTRICT qh,
                           int scale, int16_t* HWY_RESTRICT y) {
  const hn::CappedTag<int16_t, 16> d16;
  const hn::RebindToUnsigned<decltype(d16)> du16;
  const hn::Rebind<uint8_t, decltype(d16)> du8;
  for (size_t i = 0; i < 16; i += hn::Lanes(d16)) {
    auto lo = hn::PromoteTo(du16, hn::LoadU(du8, ql + i));
    const auto top = hn::PromoteTo(du16, hn::LoadU(du8, qh + i));
    if constexpr (kHighNibble)
      lo = hn::ShiftRight<4>(lo);
    else
      lo = hn::And(lo, hn::Set(du16, 0xF));
    const auto hi = hn::ShiftLeft<4>(hn::And(hn::ShiftRight<kShift>(top), hn::Set(du16, 3)));
    const auto v = hn::Sub(hn::BitCast(d16, hn::Or(lo, hi)), hn::Set(d16, int16_t(32)));
    hn::StoreU(hn::Mul(v, hn::Set(d16, int16_t(scale))), d16, y + i);
  }
}

// Q6_K: two halves of 128; ql bytes l and l+32 hold elements l, l+32 (low nibbles) and l+64,
// l+96 (high nibbles), qh byte l their top 2 bits; groups of 16 consecutive elements.
inline void block(const BlockQ6_K& b, Row r) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    const int8_t* sc = b.scales + 8 * h;
    int16_t* y = r.q + 128 * h;
    for (int p = 0; p < 2; ++p) {
      const int o = 16 * p;
      q6_k_group<false, 0>(ql + o, qh + o, sc[p], y + o);
      q6_k_group<false, 2>(ql + o + 32, qh + o, sc[p + 2], y + o + 32);
      q6_k_group<true, 4>(ql + o, qh + o, sc[p + 4], y + o + 64);
      q6_k_group<true, 6>(ql + o + 32, qh + o, sc[p + 6], y + o + 96);
    }
  }
  const float d = half(b.d);
  for (int i = 0; i < 8; ++i) r.s[i] = d;
}

// Calls f(B{}) with B the block struct of type t: one switch for every per-type kernel.
template <class F>
inline void with_block(QuantType t, F&& f) {
  switch (t) {
    case QuantType::Q4_0:
      return f(BlockQ4_0{});
    case QuantType::Q4_1:
      return f(BlockQ4_1{});
    case QuantType::Q5_0:
      return f(BlockQ5_0{});
    case QuantType::Q5_1:
      return f(BlockQ5_1{});
    case QuantType::Q8_0:
      return f(BlockQ8_0{});
    case QuantType::Q2_K:
      return f(BlockQ2_K{});
    case QuantType::Q3_K:
      return f(BlockQ3_K{});
    case QuantType::Q4_K:
      return f(BlockQ4_K{});
    case QuantType::Q5_K:
      return f(BlockQ5_K{});
    case QuantType::Q6_K:
      return f(BlockQ6_K{});
  }
}

template <class B>
void row_of(const void* src, int64_t K, int64_t per, Row r) {
  const B* b = static_cast<const B*>(src);
  for (int64_t i = 0; i < K / per; ++i)
    block(b[i], Row{r.q + i * per, r.s + i * per / 32, r.m ? r.m + i * per / 16 : nullptr});
}

// sum over blocks b of scale[b] * xd[b] * (w . x over the 32 values of block b).
HWY_INLINE float dot_blocks(const int16_t* HWY_RESTRICT w, const float* HWY_RESTRICT scale,
                            const int16_t* HWY_RESTRICT x, const float* HWY_RESTRICT xd,
                            int64_t blocks) {
  const hn::ScalableTag<int16_t> d16;
  const hn::RepartitionToWide<decltype(d16)> d32;
  const hn::Rebind<float, decltype(d32)> df;
  const size_t L = hn::Lanes(d16);
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  int64_t b = 0;
  // Two blocks per step: independent accumulator chains.
  for (; b + 2 <= blocks; b += 2) {
    auto s0 = hn::Zero(d32), s1 = hn::Zero(d32), t0 = hn::Zero(d32), t1 = hn::Zero(d32);
    for (size_t i = 0; i < 32; i += L) {
      s0 = hn::ReorderWidenMulAccumulate(d32, hn::LoadU(d16, w + 32 * b + i),
                                         hn::LoadU(d16, x + 32 * b + i), s0, s1);
      t0 = hn::ReorderWidenMulAccumulate(d32, hn::LoadU(d16, w + 32 * b + 32 + i),
                                         hn::LoadU(d16, x + 32 * b + 32 + i), t0, t1);
    }
    acc0 = hn::MulAdd(hn::ConvertTo(df, hn::Add(s0, s1)), hn::Set(df, scale[b] * xd[b]), acc0);
    acc1 =
        hn::MulAdd(hn::ConvertTo(df, hn::Add(t0, t1)), hn::Set(df, scale[b + 1] * xd[b + 1]), acc1);
  }
  for (; b < blocks; ++b) {
    auto s0 = hn::Zero(d32), s1 = hn::Zero(d32);
    for (size_t i = 0; i < 32; i += L)
      s0 = hn::ReorderWidenMulAccumulate(d32, hn::LoadU(d16, w + 32 * b + i),
                                         hn::LoadU(d16, x + 32 * b + i), s0, s1);
    acc0 = hn::MulAdd(hn::ConvertTo(df, hn::Add(s0, s1)), hn::Set(df, scale[b] * xd[b]), acc0);
  }
  return hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
}

// sum of a[i] * b[i].
HWY_INLINE float dot_f32(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t L = int64_t(hn::Lanes(df));
  auto acc = hn::Zero(df);
  int64_t i = 0;
  for (; i + L <= n; i += L) acc = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc);
  float sum = hn::GetLane(hn::SumOfLanes(df, acc));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

#undef TAPML_QUANT_U8  // this file is compiled once per target; a macro outlives each pass
#if HWY_TARGET == HWY_AVX3_DL || HWY_TARGET == HWY_AVX3
#define TAPML_QUANT_U8 1
// Highway 1.0's AVX3_DL target string names avxvnni but not avx512vnni.
#undef TAPML_VNNI_ATTR
#if HWY_TARGET == HWY_AVX3_DL
#define TAPML_VNNI_ATTR __attribute__((target("avx512vnni")))
#else
#define TAPML_VNNI_ATTR
#endif
// sum over each 4 bytes of w (unsigned) times x (signed), in 32-bit lanes: VNNI's vpdpbusd,
// or without it vpmaddubsw (pairs to 16 bits, exact while w <= 128) and vpmaddwd.
TAPML_VNNI_ATTR HWY_INLINE __m512i dot4(__m512i w, __m512i x) {
#if HWY_TARGET == HWY_AVX3_DL
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
#else
  return _mm512_madd_epi16(_mm512_maddubs_epi16(w, x), _mm512_set1_epi16(1));
#endif
}

// With AVX-512, rows are unpacked to their unsigned raw values (8 bits) and multiplied
// with the 8-bit activations by vpdpbusd, four products per 32-bit lane: w = s * (q - z) + m
// per 16 values, so a row's dot product is sum s * (q . x) + sum (m - s * z) * (sum of x).
struct Row8 {
  uint8_t* q;  // [K] raw values
  float* s;    // [K / 16] scale
  float* m;    // [K / 16] offset (m in the formula above)
};

// The raw values' zero point: q - z is the signed value.
int zero_point(QuantType t) {
  switch (t) {
    case QuantType::Q4_0:
      return 8;
    case QuantType::Q5_0:
      return 16;
    case QuantType::Q8_0:
      return 128;
    case QuantType::Q3_K:
      return 4;
    case QuantType::Q6_K:
      return 32;
    default:
      return 0;
  }
}

inline void set16(Row8 r, int g, float s, float m) { r.s[g] = s, r.m[g] = m; }

inline void block8(const BlockQ4_0& b, Row8 r) {
  for (int j = 0; j < 16; ++j) r.q[j] = uint8_t(b.qs[j] & 0xF), r.q[j + 16] = uint8_t(b.qs[j] >> 4);
  const float d = half(b.d);
  set16(r, 0, d, 0), set16(r, 1, d, 0);
}
inline void block8(const BlockQ4_1& b, Row8 r) {
  for (int j = 0; j < 16; ++j) r.q[j] = uint8_t(b.qs[j] & 0xF), r.q[j + 16] = uint8_t(b.qs[j] >> 4);
  const float d = half(b.d), m = half(b.m);
  set16(r, 0, d, m), set16(r, 1, d, m);
}
inline void q5_values(const uint8_t* qs, const uint8_t* qhp, uint8_t* q) {
  uint32_t qh;
  std::memcpy(&qh, qhp, 4);
  for (int j = 0; j < 16; ++j) {
    q[j] = uint8_t((qs[j] & 0xF) | (((qh >> j) & 1) << 4));
    q[j + 16] = uint8_t((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4));
  }
}
inline void block8(const BlockQ5_0& b, Row8 r) {
  q5_values(b.qs, b.qh, r.q);
  const float d = half(b.d);
  set16(r, 0, d, 0), set16(r, 1, d, 0);
}
inline void block8(const BlockQ5_1& b, Row8 r) {
  q5_values(b.qs, b.qh, r.q);
  const float d = half(b.d), m = half(b.m);
  set16(r, 0, d, m), set16(r, 1, d, m);
}
inline void block8(const BlockQ8_0& b, Row8 r) {
  for (int j = 0; j < 32; ++j) r.q[j] = uint8_t(b.qs[j]) ^ 0x80;
  const float d = half(b.d);
  set16(r, 0, d, 0), set16(r, 1, d, 0);
}
inline void block8(const BlockQ2_K& b, Row8 r) {
  const float d = half(b.d), dmin = half(b.dmin);
  const uint8_t* q = b.qs;
  int g = 0;
  for (int n = 0; n < kQK_K; n += 128, q += 32)
    for (int shift = 0; shift < 8; shift += 2)
      for (int part = 0; part < 2; ++part, ++g) {
        for (int l = 0; l < 16; ++l) r.q[16 * g + l] = uint8_t((q[l + 16 * part] >> shift) & 3);
        set16(r, g, d * float(b.scales[g] & 0xF), -dmin * float(b.scales[g] >> 4));
      }
}
inline void block8(const BlockQ3_K& b, Row8 r) {
  const float d = half(b.d);
  const uint8_t* q = b.qs;
  int g = 0;
  uint8_t mask = 1;
  for (int n = 0; n < kQK_K; n += 128, q += 32)
    for (int shift = 0; shift < 8; shift += 2, mask = uint8_t(mask << 1))
      for (int part = 0; part < 2; ++part, ++g) {
        for (int l = 0; l < 16; ++l) {
          const int i = l + 16 * part;
          r.q[16 * g + l] = uint8_t(((q[i] >> shift) & 3) | ((b.hmask[i] & mask) ? 4 : 0));
        }
        set16(r, g, d * float(q3_k_scale(b.scales, g) - 32), 0);
      }
}
// All eight 6-bit scales and mins of a Q4_K/Q5_K block at once (the packing scale_min_k4
// reads one group at a time): groups 0..3 in the low 6 bits of bytes 0..3 (scales) and
// 4..7 (mins); groups 4..7 in the nibbles of bytes 8..11 with their top 2 bits in the top
// bits of bytes 0..3 (scales) and 4..7 (mins).
inline void k4_scales(const uint8_t* p, uint8_t* sc, uint8_t* mn) {
  for (int j = 0; j < 4; ++j) {
    sc[j] = p[j] & 63;
    mn[j] = p[j + 4] & 63;
    sc[j + 4] = uint8_t((p[j + 8] & 0xF) | ((p[j] >> 6) << 4));
    mn[j + 4] = uint8_t((p[j + 8] >> 4) | ((p[j + 4] >> 6) << 4));
  }
}

template <class B>
inline void k4_block8(const B& b, const uint8_t* qh, Row8 r) {
  const float d = half(b.d), dmin = half(b.dmin);
  uint8_t scs[8], mns[8];
  k4_scales(b.scales, scs, mns);
  for (int c = 0; c < 4; ++c) {
    const uint8_t sc0 = scs[2 * c], mn0 = mns[2 * c], sc1 = scs[2 * c + 1], mn1 = mns[2 * c + 1];
    const uint8_t* q = b.qs + 32 * c;
    uint8_t* y = r.q + 64 * c;
    for (int l = 0; l < 32; ++l) y[l] = uint8_t(q[l] & 0xF);
    for (int l = 0; l < 32; ++l) y[l + 32] = uint8_t(q[l] >> 4);
    if (qh) {
      const int lo = 2 * c, hi = 2 * c + 1;
      for (int l = 0; l < 32; ++l) y[l] = uint8_t(y[l] | (((qh[l] >> lo) & 1) << 4));
      for (int l = 0; l < 32; ++l) y[l + 32] = uint8_t(y[l + 32] | (((qh[l] >> hi) & 1) << 4));
    }
    for (int h = 0; h < 2; ++h) {
      set16(r, 4 * c + h, d * float(sc0), -dmin * float(mn0));
      set16(r, 4 * c + 2 + h, d * float(sc1), -dmin * float(mn1));
    }
  }
}
inline void block8(const BlockQ4_K& b, Row8 r) { k4_block8(b, nullptr, r); }
inline void block8(const BlockQ5_K& b, Row8 r) { k4_block8(b, b.qh, r); }
inline void block8(const BlockQ6_K& b, Row8 r) {
  const float d = half(b.d);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    uint8_t* y = r.q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      y[l] = uint8_t((ql[l] & 0xF) | ((qh[l] & 3) << 4));
      y[l + 32] = uint8_t((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
      y[l + 64] = uint8_t((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
      y[l + 96] = uint8_t((ql[l + 32] >> 4) | ((qh[l] >> 6) << 4));
    }
    for (int g = 0; g < 8; ++g) set16(r, 8 * h + g, d * float(b.scales[8 * h + g]), 0);
  }
}

template <class B>
void row8_of(const void* src, int64_t K, int64_t per, Row8 r) {
  const B* b = static_cast<const B*>(src);
  for (int64_t i = 0; i < K / per; ++i)
    block8(b[i], Row8{r.q + i * per, r.s + i * per / 16, r.m + i * per / 16});
}

// A decode step multiplies rows straight from their blocks: no row is reused, so unpacking it
// first would only add a store and a load. One token's quantized activations:
struct TokenRow {
  const int8_t* q;     // [K]
  const float* d4;     // [K / 4] the scale of every 4 values
  const float* sum16;  // [K / 16] the sums (scale times values) per 16
};

// 16-bit pair products (vpmaddubsw: exact while |w| < 64 or 4-bit values, as here) times
// 16-bit scales, summed into 32-bit lanes: VNNI's vpdpwssd or vpmaddwd and an add.
TAPML_VNNI_ATTR HWY_INLINE __m512i add_scaled(__m512i acc, __m512i pairs, __m512i scales) {
#if HWY_TARGET == HWY_AVX3_DL
  return _mm512_dpwssd_epi32(acc, pairs, scales);
#else
  return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, scales));
#endif
}

// The eight 6-bit scales (bytes 0..7) and mins (bytes 8..15) of a Q4_K/Q5_K block, unpacked
// four at a time as k4_scales describes.
inline __m128i k4_scales_mins(const uint8_t* p) {
  uint32_t u[3];
  std::memcpy(u, p, sizeof u);
  const uint32_t low6 = 0x3F3F3F3Fu, low4 = 0x0F0F0F0Fu, top2 = 0x03030303u;
  return _mm_set_epi32(int(((u[2] >> 4) & low4) | (((u[1] >> 6) & top2) << 4)), int(u[1] & low6),
                       int((u[2] & low4) | (((u[0] >> 6) & top2) << 4)), int(u[0] & low6));
}

// Scale indices for the 16-bit lanes of four 64-value products: lane l of product j takes
// scale j * per_product + l / lanes_per_scale.
struct ScalePicks {
  alignas(64) int16_t idx[4][32];
  constexpr ScalePicks(int per_product, int lanes_per_scale) : idx{} {
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 32; ++l) idx[j][l] = int16_t(j * per_product + l / lanes_per_scale);
  }
  __m512i operator[](int j) const { return _mm512_load_si512(idx[j]); }
};
constexpr ScalePicks kQ4KPicks(2, 16), kQ6KPicks(4, 8);

// Q4_K: per chunk of 64, the 32 low nibbles and the 32 high ones side by side are elements
// 0..63 in order: 16-bit lanes 0..15 of the pair products are group 2c, 16..31 group 2c + 1.
// The sums stay integers per block, as (sum over groups scale * (q . x)) * d * dx, the min
// term comes from the activation sums per 16.
TAPML_VNNI_ATTR float q4_k_row(const BlockQ4_K* b, int64_t K, const TokenRow& x) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m512 acc = _mm512_setzero_ps(), mins = _mm512_setzero_ps();
  for (int64_t i = 0; i < K / kQK_K; ++i) {
    const __m128i sm = k4_scales_mins(b[i].scales);
    const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(sm));
    const __m512 mn16 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(sm, sm)));
    mins = _mm512_fmadd_ps(_mm512_mul_ps(mn16, _mm512_set1_ps(-half(b[i].dmin))),
                           _mm512_loadu_ps(x.sum16 + 16 * i), mins);
    __m512i sum = _mm512_setzero_si512();
    for (int c = 0; c < 4; ++c) {
      const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[i].qs + 32 * c));
      const __m256i lo = _mm256_and_si256(packed, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
      const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
      const __m512i pairs = _mm512_maddubs_epi16(w, _mm512_loadu_si512(x.q + i * kQK_K + 64 * c));
      sum = add_scaled(sum, pairs, _mm512_permutexvar_epi16(kQ4KPicks[c], sc16));
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum),
                          _mm512_set1_ps(half(b[i].d) * x.d4[i * kQK_K / 4]), acc);
  }
  return _mm512_reduce_add_ps(acc) + _mm512_reduce_add_ps(mins);
}

// Q6_K: per half of 128, bytes l of ql's two runs of 32 and of qh give elements l, l + 32
// (low nibbles, qh bits 0-1 and 2-3) and l + 64, l + 96 (high nibbles, bits 4-5 and 6-7); the
// sixteen groups of 16 have int8 scales, values are q - 32 (the 32 comes back through the
// activation sums per 16). Integer sums per block, as for Q4_K.
TAPML_VNNI_ATTR float q6_k_row(const BlockQ6_K* b, int64_t K, const TokenRow& x) {
  const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
  const auto load = [](const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  };
  __m512 acc = _mm512_setzero_ps(), zeros = _mm512_setzero_ps();
  for (int64_t i = 0; i < K / kQK_K; ++i) {
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].scales));
    const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepi8_epi16(sc8));
    const float d = half(b[i].d);
    zeros = _mm512_fmadd_ps(
        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc8)), _mm512_set1_ps(-32.0f * d)),
        _mm512_loadu_ps(x.sum16 + 16 * i), zeros);
    __m512i sum = _mm512_setzero_si512();
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load(b[i].ql + 64 * h), ql1 = load(b[i].ql + 64 * h + 32);
      const __m256i qh = load(b[i].qh + 32 * h);
      const __m256i top[4] = {
          _mm256_slli_epi16(_mm256_and_si256(qh, low2), 4),
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), low2), 4),
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), low2), 4),
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), low2), 4)};
      const __m256i v0 = _mm256_or_si256(_mm256_and_si256(ql0, low4), top[0]);
      const __m256i v1 = _mm256_or_si256(_mm256_and_si256(ql1, low4), top[1]);
      const __m256i v2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), top[2]);
      const __m256i v3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), top[3]);
      const __m512i w[2] = {_mm512_inserti64x4(_mm512_castsi256_si512(v0), v1, 1),
                            _mm512_inserti64x4(_mm512_castsi256_si512(v2), v3, 1)};
      for (int k = 0; k < 2; ++k) {
        const __m512i pairs =
            _mm512_maddubs_epi16(w[k], _mm512_loadu_si512(x.q + i * kQK_K + 128 * h + 64 * k));
        sum = add_scaled(sum, pairs, _mm512_permutexvar_epi16(kQ6KPicks[2 * h + k], sc16));
      }
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(d * x.d4[i * kQK_K / 4]), acc);
  }
  return _mm512_reduce_add_ps(acc) + _mm512_reduce_add_ps(zeros);
}

// Q8_0: two blocks of 32 per product; the weights' signs move onto the activations
// (|w| . (x * sign w)) so the unsigned-times-signed product applies; |x| <= 127, so -x fits.
TAPML_VNNI_ATTR float q8_0_row(const BlockQ8_0* b, int64_t K, const TokenRow& x) {
  const int64_t nb = K / kQK;
  const auto load = [&](int64_t j) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[j].qs));
  };
  __m512 acc = _mm512_setzero_ps();
  float tail = 0;
  int64_t i = 0;
  for (; i + 2 <= nb; i += 2) {
    const __m512i w = _mm512_inserti64x4(_mm512_castsi256_si512(load(i)), load(i + 1), 1);
    const __m512i xv = _mm512_loadu_si512(x.q + 32 * i);
    const __m512i signed_x =
        _mm512_mask_sub_epi8(xv, _mm512_movepi8_mask(w), _mm512_setzero_si512(), xv);
    const __m512i p = dot4(_mm512_abs_epi8(w), signed_x);
    const __m512 scale =
        _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(half(b[i].d) * x.d4[8 * i])),
                           _mm256_set1_ps(half(b[i + 1].d) * x.d4[8 * i + 8]), 1);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc);
  }
  for (; i < nb; ++i) {  // an odd last block
    int32_t dot = 0;
    for (int j = 0; j < kQK; ++j) dot += int32_t(b[i].qs[j]) * x.q[32 * i + j];
    tail += half(b[i].d) * x.d4[8 * i] * float(dot);
  }
  return _mm512_reduce_add_ps(acc) + tail;
}

// Rows [n_begin, n_end) of blocks B against each token row, by RowDot.
constexpr size_t kPrefetchAhead = 4096;
template <class B, float (*RowDot)(const B*, int64_t, const TokenRow&)>
void rows_from_blocks(const QuantMatmulArgs& a, int64_t n_begin, int64_t n_end) {
  const int64_t K = a.K;
  const size_t row_bytes = quant_row_bytes(a.wtype, K);
  for (int64_t t = 0; t < a.T; ++t) {
    const TokenRow x{a.x->q8.data() + t * K, a.x->d4.data() + t * (K / 4),
                     a.x->sum16.data() + t * (K / 16)};
    for (int64_t n = n_begin; n < n_end; ++n) {
      const char* ahead = static_cast<const char*>(a.w) + size_t(n) * row_bytes + kPrefetchAhead;
      for (size_t o = 0; o < row_bytes; o += 64) _mm_prefetch(ahead + o, _MM_HINT_T0);
      a.out[t * a.N + n] = RowDot(
          reinterpret_cast<const B*>(static_cast<const std::byte*>(a.w) + size_t(n) * row_bytes), K,
          x);
    }
  }
}

TAPML_VNNI_ATTR void QuantMatmulRangeU8(const QuantMatmulArgs& a, int64_t n_begin, int64_t n_end) {
  if (a.T <= 2) {  // a decode step (or two): rows straight from their blocks
    if (a.wtype == QuantType::Q8_0) return rows_from_blocks<BlockQ8_0, q8_0_row>(a, n_begin, n_end);
    if (a.wtype == QuantType::Q4_K) return rows_from_blocks<BlockQ4_K, q4_k_row>(a, n_begin, n_end);
    if (a.wtype == QuantType::Q6_K) return rows_from_blocks<BlockQ6_K, q6_k_row>(a, n_begin, n_end);
  }

  // Four rows unpacked at a time, so that each token's activations are read once per four
  // rows (a prefill's activations outgrow the L1 cache).
  constexpr int kRows = 4;
  const int64_t K = a.K, groups = K / 16;
  const QuantActivations& x = *a.x;
  thread_local std::vector<uint8_t> q;
  thread_local std::vector<float> s, m, s4;
  q.resize(size_t(kRows * K));
  s.resize(size_t(kRows * groups));
  m.resize(size_t(kRows * groups));
  s4.resize(size_t(kRows * K / 4));
  const size_t row_bytes = quant_row_bytes(a.wtype, K);
  const float z = float(zero_point(a.wtype));
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kRows) {
    const int rows = int(std::min<int64_t>(kRows, n_end - n0));
    for (int r = 0; r < rows; ++r) {
      const std::byte* src = static_cast<const std::byte*>(a.w) + size_t(n0 + r) * row_bytes;
      const Row8 row{q.data() + r * K, s.data() + r * groups, m.data() + r * groups};
      with_block(a.wtype, [&](auto block) {
        row8_of<decltype(block)>(src, K, quant_block_elems(a.wtype), row);
      });
      for (int64_t g = 0; g < groups; ++g) {
        const float sg = s[size_t(r * groups + g)];
        for (int j = 0; j < 4; ++j) s4[size_t(r * K / 4 + 4 * g + j)] = sg;
        m[size_t(r * groups + g)] -= sg * z;
      }
    }
    for (int64_t t = 0; t < a.T; ++t) {
      const int8_t* xq = x.q8.data() + t * K;
      const float* dx4 = x.d4.data() + t * (K / 4);
      __m512 acc[kRows] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                           _mm512_setzero_ps()};
      for (int64_t i = 0; i < K; i += 64) {  // 64 or, at the end of a legacy row, 32 values
        const int64_t left = std::min<int64_t>(64, K - i);
        const __mmask64 bytes = left == 64 ? ~__mmask64(0) : (__mmask64(1) << left) - 1;
        const __mmask16 lanes = __mmask16(left == 64 ? 0xFFFF : (1u << (left / 4)) - 1);
        const __m512i xv = _mm512_maskz_loadu_epi8(bytes, xq + i);
        const __m512 dx = _mm512_maskz_loadu_ps(lanes, dx4 + i / 4);
        for (int r = 0; r < rows; ++r) {
          const __m512i p = dot4(_mm512_maskz_loadu_epi8(bytes, q.data() + r * K + i), xv);
          acc[r] =
              _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(p), dx),
                              _mm512_maskz_loadu_ps(lanes, s4.data() + r * K / 4 + i / 4), acc[r]);
        }
      }
      for (int r = 0; r < rows; ++r)
        a.out[t * a.N + n0 + r] =
            _mm512_reduce_add_ps(acc[r]) +
            dot_f32(m.data() + r * groups, x.sum16.data() + t * groups, groups);
    }
  }
}
#endif

void QuantMatmulRange(const QuantMatmulArgs& a, int64_t n_begin, int64_t n_end) {
#ifdef TAPML_QUANT_U8
  // Q8_0's raw values reach 255, past what vpmaddubsw's 16-bit pairs hold.
  if (HWY_TARGET == HWY_AVX3_DL || a.wtype != QuantType::Q8_0)
    return QuantMatmulRangeU8(a, n_begin, n_end);
#endif
  const int64_t K = a.K, blocks = K / 32, groups = K / 16;
  const QuantActivations& x = *a.x;
  const bool has_min = quant_has_min(a.wtype);
  thread_local std::vector<int16_t> q;
  thread_local std::vector<float> s, m;
  q.resize(size_t(K));
  s.resize(size_t(blocks));
  m.resize(size_t(groups));
  const Row row{q.data(), s.data(), has_min ? m.data() : nullptr};
  const size_t row_bytes = quant_row_bytes(a.wtype, K);
  for (int64_t n = n_begin; n < n_end; ++n) {
    const std::byte* src = static_cast<const std::byte*>(a.w) + size_t(n) * row_bytes;
    with_block(a.wtype, [&](auto block) {
      row_of<decltype(block)>(src, K, quant_block_elems(a.wtype), row);
    });
    for (int64_t t = 0; t < a.T; ++t) {
      const int16_t* xq = x.q.data() + t * K;
      const float* xd = x.d.data() + t * blocks;
      float acc = dot_blocks(q.data(), s.data(), xq, xd, blocks);
      if (has_min) acc += dot_f32(m.data(), x.sum16.data() + t * groups, groups);
      a.out[t * a.N + n] = acc;
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace tapml::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace tapml::cpu {

HWY_EXPORT(QuantMatmulRange);

void quant_matmul_range(const QuantMatmulArgs& a, int64_t n_begin, int64_t n_end) {
  HWY_DYNAMIC_DISPATCH(QuantMatmulRange)(a, n_begin, n_end);
}

bool quant_has_min(QuantType t) {
  switch (t) {
    case QuantType::Q4_1:
    case QuantType::Q5_1:
    case QuantType::Q2_K:
    case QuantType::Q4_K:
    case QuantType::Q5_K:
      return true;
    default:
      return false;
  }
}

void quantize_activations(QuantType w, const float* x, int64_t T, int64_t K,
                          QuantActivations& out) {
  TAPML_REQUIRE(K % quant_block_elems(w) == 0,
                "quantize_activations: " + std::to_string(K) + " is not a whole number of blocks");
  const int64_t blocks = K / 32, groups = K / 16;
  out.q.resize(size_t(T * K));
  out.d.resize(size_t(T * blocks));
  out.sum16.resize(size_t(T * groups));
  out.q8.resize(size_t(T * K));
  out.d4.resize(size_t(T * K / 4));
  for (int64_t t = 0; t < T; ++t) {
    const float* xt = x + t * K;
    int16_t* q = out.q.data() + t * K;
    float* d = out.d.data() + t * blocks;
    float* sums = out.sum16.data() + t * groups;
    int8_t* q8 = out.q8.data() + t * K;
    float* d4 = out.d4.data() + t * (K / 4);
    if (quant_block_elems(w) == quant::kQK_K) {
      quant::BlockQ8_K b;
      for (int64_t i = 0; i < K / quant::kQK_K; ++i) {
        quant::quantize_row_q8_k(xt + i * quant::kQK_K, &b, quant::kQK_K);
        for (int j = 0; j < quant::kQK_K; ++j) q[i * quant::kQK_K + j] = b.qs[j];
        for (int j = 0; j < 8; ++j) d[i * 8 + j] = b.d;
        for (int j = 0; j < 16; ++j) sums[i * 16 + j] = b.d * float(b.bsums[j]);
      }
    } else {
      quant::BlockQ8_0 b;
      for (int64_t i = 0; i < blocks; ++i) {
        quantize_row(QuantType::Q8_0, xt + i * 32, &b, 32);
        int32_t lo = 0, hi = 0;
        for (int j = 0; j < 32; ++j) {
          q[i * 32 + j] = b.qs[j];
          (j < 16 ? lo : hi) += b.qs[j];
        }
        d[i] = f16_to_f32(b.d);
        sums[2 * i] = d[i] * float(lo);
        sums[2 * i + 1] = d[i] * float(hi);
      }
    }
    for (int64_t k = 0; k < K; ++k) q8[k] = int8_t(q[k]);
    for (int64_t l = 0; l < K / 4; ++l) d4[l] = d[l / 8];
  }
}

}  // namespace tapml::cpu
#endif

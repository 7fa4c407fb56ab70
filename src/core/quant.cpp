#include "core/quant.h"

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

// Bit-exactness with ggml (built without FMA) needs every product rounded before it is added,
// so no multiply-add may be fused here, whatever -march the build uses (aarch64 has FMA in its
// base instruction set, so GCC would fuse `d * q - m` there by default).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace tapml {

using namespace quant;

static_assert(std::endian::native == std::endian::little, "quantized blocks are little-endian");
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);

namespace {

struct Info {
  QuantType type;
  int64_t elems;
  size_t bytes;
  std::string_view name;
};

constexpr Info kInfo[] = {
    {QuantType::Q4_0, kQK, sizeof(BlockQ4_0), "q4_0"},
    {QuantType::Q4_1, kQK, sizeof(BlockQ4_1), "q4_1"},
    {QuantType::Q5_0, kQK, sizeof(BlockQ5_0), "q5_0"},
    {QuantType::Q5_1, kQK, sizeof(BlockQ5_1), "q5_1"},
    {QuantType::Q8_0, kQK, sizeof(BlockQ8_0), "q8_0"},
    {QuantType::Q2_K, kQK_K, sizeof(BlockQ2_K), "q2_K"},
    {QuantType::Q3_K, kQK_K, sizeof(BlockQ3_K), "q3_K"},
    {QuantType::Q4_K, kQK_K, sizeof(BlockQ4_K), "q4_K"},
    {QuantType::Q5_K, kQK_K, sizeof(BlockQ5_K), "q5_K"},
    {QuantType::Q6_K, kQK_K, sizeof(BlockQ6_K), "q6_K"},
};

const Info& info(QuantType t) {
  for (const Info& i : kInfo)
    if (i.type == t) return i;
  throw Error("unknown quantized type id " + std::to_string(int(t)));
}

// ggml's GROUP_MAX_EPS: a group whose largest magnitude is below this is all zeros.
constexpr float kGroupMaxEps = 1e-15f;

float half(uint16_t h) { return f16_to_f32(h); }
uint16_t to_half(float f) { return f32_to_f16(f); }

// ggml's nearest_int: round to nearest, ties to even, by adding 1.5 * 2^23 and reading the
// mantissa. Exact for |f| <= 2^22; beyond that it returns what ggml returns.
int nearest_int(float f) {
  float v = f + 12582912.f;
  int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// ggml's MIN/MAX macros (the comparison order matters only for NaN, kept anyway).
template <class T>
T min_of(T a, T b) {
  return a < b ? a : b;
}
template <class T>
T max_of(T a, T b) {
  return a > b ? a : b;
}

}  // namespace

namespace quant {

// A Q4_K/Q5_K 6-bit scale and min of group j (0..7) from the 12 packed bytes: groups 0..3 in
// the low 6 bits of bytes j and j+4; groups 4..7 as nibbles of byte j+4 plus the top 2 bits of
// bytes j-4 and j.
void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}

// The 6-bit scale of Q3_K group j (0..15), biased by 32: low nibbles in bytes 0..7 (groups
// 8..15 in the high nibbles), the top 2 bits in bytes 8..11.
int q3_k_scale(const uint8_t* scales, int j) {
  int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  int high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
  return low | high << 4;
}

}  // namespace quant

namespace {

// ---------------------------------------------------------------- dequantization, per block

void dequant(const BlockQ4_0& b, float* y) {
  const float d = half(b.d);
  for (int j = 0; j < kQK / 2; ++j) {
    const int x0 = (b.qs[j] & 0x0F) - 8;
    const int x1 = (b.qs[j] >> 4) - 8;
    y[j] = float(x0) * d;
    y[j + kQK / 2] = float(x1) * d;
  }
}

void dequant(const BlockQ4_1& b, float* y) {
  const float d = half(b.d);
  const float m = half(b.m);
  for (int j = 0; j < kQK / 2; ++j) {
    const int x0 = b.qs[j] & 0x0F;
    const int x1 = b.qs[j] >> 4;
    y[j] = float(x0) * d + m;
    y[j + kQK / 2] = float(x1) * d + m;
  }
}

void dequant(const BlockQ5_0& b, float* y) {
  const float d = half(b.d);
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < kQK / 2; ++j) {
    const int h0 = ((qh >> j) << 4) & 0x10;
    const int h1 = (qh >> (j + 12)) & 0x10;
    const int x0 = ((b.qs[j] & 0x0F) | h0) - 16;
    const int x1 = ((b.qs[j] >> 4) | h1) - 16;
    y[j] = float(x0) * d;
    y[j + kQK / 2] = float(x1) * d;
  }
}

void dequant(const BlockQ5_1& b, float* y) {
  const float d = half(b.d);
  const float m = half(b.m);
  uint32_t qh;
  std::memcpy(&qh, b.qh, 4);
  for (int j = 0; j < kQK / 2; ++j) {
    const int h0 = ((qh >> j) << 4) & 0x10;
    const int h1 = (qh >> (j + 12)) & 0x10;
    const int x0 = (b.qs[j] & 0x0F) | h0;
    const int x1 = (b.qs[j] >> 4) | h1;
    y[j] = float(x0) * d + m;
    y[j + kQK / 2] = float(x1) * d + m;
  }
}

void dequant(const BlockQ8_0& b, float* y) {
  const float d = half(b.d);
  for (int j = 0; j < kQK; ++j) y[j] = float(b.qs[j]) * d;
}

// Output order: two halves of 128; in each, four 2-bit planes (shift 0, 2, 4, 6) of the same
// 32 bytes, each plane two groups of 16 with their own scale.
void dequant(const BlockQ2_K& b, float* y) {
  const float d = half(b.d);
  const float dmin = half(b.dmin);
  const uint8_t* q = b.qs;
  int g = 0;
  for (int n = 0; n < kQK_K; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int part = 0; part < 2; ++part, ++g) {
        const uint8_t sc = b.scales[g];
        const float dl = d * float(sc & 0xF);
        const float ml = dmin * float(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * float((q[l + 16 * part] >> shift) & 3) - ml;
      }
    }
    q += 32;
  }
}

// As Q2_K, with the third bit of each value in hmask: bit k of hmask[l] belongs to the k-th
// plane (of eight across both halves), and a clear bit subtracts 4.
void dequant(const BlockQ3_K& b, float* y) {
  const float d_all = half(b.d);
  const uint8_t* q = b.qs;
  int g = 0;
  uint8_t m = 1;
  for (int n = 0; n < kQK_K; n += 128) {
    for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
      for (int part = 0; part < 2; ++part, ++g) {
        const float dl = d_all * float(q3_k_scale(b.scales, g) - 32);
        for (int l = 0; l < 16; ++l) {
          const int i = l + 16 * part;
          const int v = ((q[i] >> shift) & 3) - ((b.hmask[i] & m) ? 0 : 4);
          *y++ = dl * float(v);
        }
      }
    }
    q += 32;
  }
}

// Four chunks of 64: 32 low nibbles (group 2c) then 32 high nibbles (group 2c+1) of 32 bytes.
void dequant(const BlockQ4_K& b, float* y) {
  const float d = half(b.d);
  const float dmin = half(b.dmin);
  const uint8_t* q = b.qs;
  for (int g = 0; g < 8; g += 2) {
    uint8_t sc, m;
    scale_min_k4(g, b.scales, sc, m);
    const float d1 = d * float(sc);
    const float m1 = dmin * float(m);
    scale_min_k4(g + 1, b.scales, sc, m);
    const float d2 = d * float(sc);
    const float m2 = dmin * float(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float(q[l] >> 4) - m2;
    q += 32;
  }
}

// As Q4_K; the fifth bit of group g's element l is bit g of qh[l].
void dequant(const BlockQ5_K& b, float* y) {
  const float d = half(b.d);
  const float dmin = half(b.dmin);
  const uint8_t* ql = b.qs;
  uint8_t u1 = 1, u2 = 2;
  for (int g = 0; g < 8; g += 2) {
    uint8_t sc, m;
    scale_min_k4(g, b.scales, sc, m);
    const float d1 = d * float(sc);
    const float m1 = dmin * float(m);
    scale_min_k4(g + 1, b.scales, sc, m);
    const float d2 = d * float(sc);
    const float m2 = dmin * float(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * float((ql[l] & 0xF) + (b.qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * float((ql[l] >> 4) + (b.qh[l] & u2 ? 16 : 0)) - m2;
    ql += 32;
    u1 <<= 2;
    u2 <<= 2;
  }
}

// Two halves of 128: ql bytes l and l+32 hold elements l, l+32 (low nibbles) and l+64, l+96
// (high nibbles); qh byte l holds their top 2 bits at shifts 0, 2, 4, 6.
void dequant(const BlockQ6_K& b, float* y) {
  const float d = half(b.d);
  const uint8_t* ql = b.ql;
  const uint8_t* qh = b.qh;
  const int8_t* sc = b.scales;
  for (int n = 0; n < kQK_K; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * float(sc[is]) * float(q1);
      y[l + 32] = d * float(sc[is + 2]) * float(q2);
      y[l + 64] = d * float(sc[is + 4]) * float(q3);
      y[l + 96] = d * float(sc[is + 6]) * float(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// The value of largest magnitude in x[0..n), with its sign (the first of equal magnitudes),
// as ggml's quantizers find it.
float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

// ---------------------------------------------------------------- legacy quantizers

void quant(const float* x, BlockQ4_0& b) {
  const float max = signed_absmax(x, kQK);
  const float d = max / -8;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = to_half(d);
  for (int j = 0; j < kQK / 2; ++j) {
    const float x0 = x[j] * id;
    const float x1 = x[j + kQK / 2] * id;
    const uint8_t q0 = uint8_t(min_of(15, int(int8_t(x0 + 8.5f))));
    const uint8_t q1 = uint8_t(min_of(15, int(int8_t(x1 + 8.5f))));
    b.qs[j] = uint8_t(q0 | q1 << 4);
  }
}

void quant(const float* x, BlockQ4_1& b) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < kQK; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / 15;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = to_half(d);
  b.m = to_half(min);
  for (int j = 0; j < kQK / 2; ++j) {
    const float x0 = (x[j] - min) * id;
    const float x1 = (x[j + kQK / 2] - min) * id;
    const uint8_t q0 = uint8_t(min_of(15, int(int8_t(x0 + 0.5f))));
    const uint8_t q1 = uint8_t(min_of(15, int(int8_t(x1 + 0.5f))));
    b.qs[j] = uint8_t(q0 | q1 << 4);
  }
}

void quant(const float* x, BlockQ5_0& b) {
  const float max = signed_absmax(x, kQK);
  const float d = max / -16;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = to_half(d);
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    const float x0 = x[j] * id;
    const float x1 = x[j + kQK / 2] * id;
    const uint8_t q0 = uint8_t(min_of(31, int(int8_t(x0 + 16.5f))));
    const uint8_t q1 = uint8_t(min_of(31, int(int8_t(x1 + 16.5f))));
    b.qs[j] = uint8_t((q0 & 0x0F) | (q1 & 0x0F) << 4);
    qh |= uint32_t((q0 & 0x10u) >> 4) << j;
    qh |= uint32_t((q1 & 0x10u) >> 4) << (j + kQK / 2);
  }
  std::memcpy(b.qh, &qh, 4);
}

void quant(const float* x, BlockQ5_1& b) {
  float min = FLT_MAX, max = -FLT_MAX;
  for (int j = 0; j < kQK; ++j) {
    if (x[j] < min) min = x[j];
    if (x[j] > max) max = x[j];
  }
  const float d = (max - min) / 31;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = to_half(d);
  b.m = to_half(min);
  uint32_t qh = 0;
  for (int j = 0; j < kQK / 2; ++j) {
    const float x0 = (x[j] - min) * id;
    const float x1 = (x[j + kQK / 2] - min) * id;
    // No clamp to 31 here, as in ggml: (max - min) * id rounds to at most 31.000004.
    const uint8_t q0 = uint8_t(x0 + 0.5f);
    const uint8_t q1 = uint8_t(x1 + 0.5f);
    b.qs[j] = uint8_t((q0 & 0x0F) | (q1 & 0x0F) << 4);
    qh |= uint32_t((q0 & 0x10u) >> 4) << j;
    qh |= uint32_t((q1 & 0x10u) >> 4) << (j + kQK / 2);
  }
  std::memcpy(b.qh, &qh, 4);
}

void quant(const float* x, BlockQ8_0& b) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = max_of(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  b.d = to_half(d);
  for (int j = 0; j < kQK; ++j) b.qs[j] = int8_t(std::round(x[j] * id));  // halves away from 0
}

// ---------------------------------------------------------------- K-quant scale searches

// ggml's make_qx_quants with rmse_type 1 and weights x^2 (all its reference quantizers use):
// symmetric levels L in 0..2*nmax-1 (bias nmax) for n values; tries 18 scales around
// nmax/max and returns the one minimizing the weighted squared error.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = float(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = max_of(-nmax, min_of(nmax - 1, l));
    L[i] = int8_t(l + nmax);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(float(nmax) + 0.1f * float(is)) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = max_of(-nmax, min_of(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += w * x[i] * float(l);
      suml2 += w * float(l) * float(l);
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = int8_t(nmax + max_of(-nmax, min_of(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// ggml's make_q3_quants with do_rmse: levels -nmax..nmax-1 from nmax/max, then up to 5 passes
// moving single levels while that lowers the x^2-weighted error; L gets the bias nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
  const float max = signed_absmax(x, n);
  if (std::fabs(max) < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  const float iscale = float(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = max_of(-nmax, min_of(nmax - 1, l));
    L[i] = int8_t(l);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * float(l);
    suml2 += w * float(l) * float(l);
  }
  for (int itry = 0; itry < 5; ++itry) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      float slx = sumlx - w * x[i] * float(L[i]);
      if (slx > 0) {
        float sl2 = suml2 - w * float(L[i]) * float(L[i]);
        int new_l = nearest_int(x[i] * sl2 / slx);
        new_l = max_of(-nmax, min_of(nmax - 1, new_l));
        if (new_l != L[i]) {
          slx += w * x[i] * float(new_l);
          sl2 += w * float(new_l) * float(new_l);
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            L[i] = int8_t(new_l);
            sumlx = slx;
            suml2 = sl2;
            ++n_changed;
          }
        }
      }
    }
    if (!n_changed) break;
  }
  for (int i = 0; i < n; ++i) L[i] = int8_t(L[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ggml's make_qkx2_quants: asymmetric levels L in 0..nmax with x ~ scale * L - the_min. Starts
// from the [min(x, 0), max(x)] range, then tries nstep+1 scales, each refit by weighted least
// squares (min clamped to <= 0), keeping the lowest weighted error (|diff| if use_mad, else
// diff^2). Laux is scratch of n levels.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                       float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep,
                       bool use_mad) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = float(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = uint8_t(max_of(0, min_of(nmax, l)));
    float diff = scale * float(L[i]) + min - x[i];
    diff = use_mad ? std::fabs(diff) : diff * diff;
    best_error += weights[i] * diff;
  }
  if (nstep < 1) {
    *the_min = -min;
    return scale;
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * float(is) + float(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = max_of(0, min_of(nmax, l));
      Laux[i] = uint8_t(l);
      const float w = weights[i];
      sum_l += w * float(l);
      sum_l2 += w * float(l) * float(l);
      sum_xl += w * float(l) * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = this_scale * float(Laux[i]) + this_min - x[i];
        diff = use_mad ? std::fabs(diff) : diff * diff;
        cur_error += weights[i] * diff;
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// Q2_K/Q3_K pack four 2-bit planes: byte l of each 32-byte half holds elements l, l+32, l+64,
// l+96 of that half's 128.
void pack_2bit(const uint8_t* L, uint8_t* qs) {
  for (int j = 0; j < kQK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] =
          uint8_t(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 | L[j + l + 96] << 6);
}

// Q4_K/Q5_K: packs 6-bit scale ls and min lm of group j into the 12 scale bytes (the inverse
// of scale_min_k4; the bytes must start zeroed).
void pack_scale_min_k4(int j, uint8_t ls, uint8_t lm, uint8_t* scales) {
  if (j < 4) {
    scales[j] = ls;
    scales[j + 4] = lm;
  } else {
    scales[j + 4] = uint8_t((ls & 0xF) | (lm & 0xF) << 4);
    scales[j - 4] |= uint8_t((ls >> 4) << 6);
    scales[j - 0] |= uint8_t((lm >> 4) << 6);
  }
}

// ---------------------------------------------------------------- K-quant quantizers

// ggml's quantize_row_q*_K_ref. llama-quantize without --imatrix reaches exactly these (its
// quantize_q*_K call them when no importance weights are given), so our blocks are
// bit-identical to its files; with an imatrix it runs other searches (make_qkx3_quants,
// make_qp_quants), which are not here.

void quant(const float* x, BlockQ2_K& b) {
  uint8_t L[kQK_K], Laux[16];
  float weights[16], mins[kQK_K / 16], scales[kQK_K / 16];
  const float q4scale = 15.f;
  float max_scale = 0, max_min = 0;  // scales are positive: the min is subtracted
  for (int j = 0; j < kQK_K / 16; ++j) {
    for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
    scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                 0.1f, 15, true);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  if (max_scale > 0) {
    const float iscale = q4scale / max_scale;
    for (int j = 0; j < kQK_K / 16; ++j) b.scales[j] = uint8_t(nearest_int(iscale * scales[j]));
    b.d = to_half(max_scale / q4scale);
  } else {
    for (int j = 0; j < kQK_K / 16; ++j) b.scales[j] = 0;
    b.d = to_half(0.f);
  }
  if (max_min > 0) {
    const float iscale = q4scale / max_min;
    for (int j = 0; j < kQK_K / 16; ++j)
      b.scales[j] = uint8_t(b.scales[j] | nearest_int(iscale * mins[j]) << 4);
    b.dmin = to_half(max_min / q4scale);
  } else {
    b.dmin = to_half(0.f);
  }
  // Requantize against the scales as stored (rounded to 4 bits and f16).
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = half(b.d) * float(b.scales[j] & 0xF);
    if (d == 0.0f) continue;
    const float dm = half(b.dmin) * float(b.scales[j] >> 4);
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int((x[16 * j + ii] + dm) / d);
      L[16 * j + ii] = uint8_t(max_of(0, min_of(3, l)));
    }
  }
  pack_2bit(L, b.qs);
}

void quant(const float* x, BlockQ3_K& b) {
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  float max_scale = 0, amax = 0;  // the scale of largest magnitude, with its sign
  for (int j = 0; j < kQK_K / 16; ++j) {
    scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
    const float scale = std::fabs(scales[j]);
    if (scale > amax) {
      amax = scale;
      max_scale = scales[j];
    }
  }
  std::memset(b.scales, 0, sizeof b.scales);
  if (max_scale != 0.0f) {
    const float iscale = -32.f / max_scale;
    for (int j = 0; j < kQK_K / 16; ++j) {
      int8_t l = int8_t(nearest_int(iscale * scales[j]));
      l = int8_t(max_of(-32, min_of(31, int(l))) + 32);
      if (j < 8)
        b.scales[j] = uint8_t(l & 0xF);
      else
        b.scales[j - 8] |= uint8_t((l & 0xF) << 4);
      l = int8_t(l >> 4);
      b.scales[j % 4 + 8] |= uint8_t(l << (2 * (j / 4)));
    }
    b.d = to_half(1 / iscale);
  } else {
    b.d = to_half(0.f);
  }
  for (int j = 0; j < kQK_K / 16; ++j) {
    const int sc = q3_k_scale(b.scales, j) - 32;
    const float d = half(b.d) * float(sc);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = int8_t(max_of(-4, min_of(3, l)) + 4);
    }
  }
  // The third bit of element j goes to bit j/32 of hmask[j%32]; qs keeps the low two.
  std::memset(b.hmask, 0, sizeof b.hmask);
  uint8_t low[kQK_K];
  for (int j = 0; j < kQK_K; ++j) {
    int l = L[j];
    if (l > 3) {
      b.hmask[j % 32] |= uint8_t(1 << (j / 32));
      l -= 4;
    }
    low[j] = uint8_t(l);
  }
  pack_2bit(low, b.qs);
}

// Q4_K and Q5_K alike: eight sub-blocks of 32, each with a scale and a min found by
// make_qkx2_quants (levels 0..nmax), stored as 6-bit values against the super-block's d and
// dmin; then every value's level against the stored (rounded) scale and min, into L.
template <class Block>
void quant_scales_mins_k(const float* x, int nmax, float rmin, int nstep, Block& b, uint8_t* L) {
  uint8_t Laux[32];
  float weights[32], mins[kQK_K / 32], scales[kQK_K / 32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < kQK_K / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin,
                                 0.1f, nstep, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::memset(b.scales, 0, sizeof b.scales);
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t ls = uint8_t(nearest_int(inv_scale * scales[j]));
    uint8_t lm = uint8_t(nearest_int(inv_min * mins[j]));
    pack_scale_min_k4(j, min_of<uint8_t>(63, ls), min_of<uint8_t>(63, lm), b.scales);
  }
  b.d = to_half(max_scale / 63.f);
  b.dmin = to_half(max_min / 63.f);
  for (int j = 0; j < kQK_K / 32; ++j) {
    uint8_t sc, m;
    scale_min_k4(j, b.scales, sc, m);
    const float d = half(b.d) * float(sc);
    if (d == 0.0f) continue;
    const float dm = half(b.dmin) * float(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = uint8_t(max_of(0, min_of(nmax, l)));
    }
  }
}

void quant(const float* x, BlockQ4_K& b) {
  uint8_t L[kQK_K];
  quant_scales_mins_k(x, 15, -1.f, 20, b, L);
  for (int j = 0; j < kQK_K; j += 64)
    for (int l = 0; l < 32; ++l) b.qs[j / 2 + l] = uint8_t(L[j + l] | L[j + l + 32] << 4);
}

void quant(const float* x, BlockQ5_K& b) {
  uint8_t L[kQK_K];
  quant_scales_mins_k(x, 31, -0.5f, 15, b, L);
  // Chunk c of 64: low nibbles of qs[32c + l] hold elements l and l+32; their fifth bits go to
  // bits 2c and 2c+1 of qh[l].
  std::memset(b.qh, 0, sizeof b.qh);
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < kQK_K; n += 64) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j];
      if (l1 > 15) {
        l1 -= 16;
        b.qh[j] |= m1;
      }
      int l2 = L[n + j + 32];
      if (l2 > 15) {
        l2 -= 16;
        b.qh[j] |= m2;
      }
      b.qs[n / 2 + j] = uint8_t(l1 | l2 << 4);
    }
    m1 = uint8_t(m1 << 2);
    m2 = uint8_t(m2 << 2);
  }
}

void quant(const float* x, BlockQ6_K& b) {
  int8_t L[kQK_K];
  float scales[kQK_K / 16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < kQK_K / 16; ++ib) {
    const float scale = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
    scales[ib] = scale;
    if (std::fabs(scale) > max_abs_scale) {
      max_abs_scale = std::fabs(scale);
      max_scale = scale;
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(&b, 0, sizeof b);
    return;
  }
  const float iscale = -128.f / max_scale;
  b.d = to_half(1 / iscale);
  for (int ib = 0; ib < kQK_K / 16; ++ib)
    b.scales[ib] = int8_t(min_of(127, nearest_int(iscale * scales[ib])));
  for (int j = 0; j < kQK_K / 16; ++j) {
    const float d = half(b.d) * float(b.scales[j]);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = nearest_int(x[16 * j + ii] / d);
      L[16 * j + ii] = int8_t(max_of(-32, min_of(31, l)) + 32);
    }
  }
  uint8_t* ql = b.ql;
  uint8_t* qh = b.qh;
  for (int j = 0; j < kQK_K; j += 128) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l] & 0xF;
      const int q2 = L[j + l + 32] & 0xF;
      const int q3 = L[j + l + 64] & 0xF;
      const int q4 = L[j + l + 96] & 0xF;
      ql[l] = uint8_t(q1 | q3 << 4);
      ql[l + 32] = uint8_t(q2 | q4 << 4);
      qh[l] = uint8_t((L[j + l] >> 4) | (L[j + l + 32] >> 4) << 2 | (L[j + l + 64] >> 4) << 4 |
                      (L[j + l + 96] >> 4) << 6);
    }
    ql += 64;
    qh += 32;
  }
}

// ---------------------------------------------------------------- rows

// Blocks are copied in and out so that the caller's bytes need no alignment.
template <class Block>
void dequant_blocks(const void* blocks, float* out, int64_t nb, int64_t qk) {
  const auto* p = static_cast<const uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i) {
    Block b;
    std::memcpy(&b, p + i * int64_t(sizeof(Block)), sizeof(Block));
    dequant(b, out + i * qk);
  }
}

template <class Block>
void quant_blocks(const float* in, void* blocks, int64_t nb, int64_t qk) {
  auto* p = static_cast<uint8_t*>(blocks);
  for (int64_t i = 0; i < nb; ++i) {
    Block b;
    std::memset(&b, 0, sizeof b);
    quant(in + i * qk, b);
    std::memcpy(p + i * int64_t(sizeof(Block)), &b, sizeof(Block));
  }
}

int64_t block_count(QuantType t, int64_t n, const char* what) {
  const Info& i = info(t);
  TAPML_REQUIRE(n >= 0 && n % i.elems == 0,
                std::string(what) + " " + std::string(i.name) + ": " + std::to_string(n) +
                    " elements is not a multiple of the block size " + std::to_string(i.elems));
  return n / i.elems;
}

}  // namespace

int64_t quant_block_elems(QuantType t) { return info(t).elems; }
size_t quant_block_bytes(QuantType t) { return info(t).bytes; }
std::string_view quant_name(QuantType t) { return info(t).name; }

std::optional<QuantType> quant_from_ggml_id(uint32_t id) {
  for (const Info& i : kInfo)
    if (uint32_t(i.type) == id) return i.type;
  return std::nullopt;
}

std::optional<QuantType> quant_from_name(std::string_view name) {
  for (const Info& i : kInfo)
    if (i.name == name) return i.type;
  return std::nullopt;
}

size_t quant_row_bytes(QuantType t, int64_t n) {
  return size_t(block_count(t, n, "row of")) * info(t).bytes;
}

void dequantize_row(QuantType t, const void* blocks, float* out, int64_t n) {
  const int64_t nb = block_count(t, n, "dequantize");
  const int64_t qk = info(t).elems;
  switch (t) {
    case QuantType::Q4_0:
      return dequant_blocks<BlockQ4_0>(blocks, out, nb, qk);
    case QuantType::Q4_1:
      return dequant_blocks<BlockQ4_1>(blocks, out, nb, qk);
    case QuantType::Q5_0:
      return dequant_blocks<BlockQ5_0>(blocks, out, nb, qk);
    case QuantType::Q5_1:
      return dequant_blocks<BlockQ5_1>(blocks, out, nb, qk);
    case QuantType::Q8_0:
      return dequant_blocks<BlockQ8_0>(blocks, out, nb, qk);
    case QuantType::Q2_K:
      return dequant_blocks<BlockQ2_K>(blocks, out, nb, qk);
    case QuantType::Q3_K:
      return dequant_blocks<BlockQ3_K>(blocks, out, nb, qk);
    case QuantType::Q4_K:
      return dequant_blocks<BlockQ4_K>(blocks, out, nb, qk);
    case QuantType::Q5_K:
      return dequant_blocks<BlockQ5_K>(blocks, out, nb, qk);
    case QuantType::Q6_K:
      return dequant_blocks<BlockQ6_K>(blocks, out, nb, qk);
  }
}

void quantize_row(QuantType t, const float* in, void* blocks, int64_t n) {
  const int64_t nb = block_count(t, n, "quantize");
  const int64_t qk = info(t).elems;
  switch (t) {
    case QuantType::Q4_0:
      return quant_blocks<BlockQ4_0>(in, blocks, nb, qk);
    case QuantType::Q4_1:
      return quant_blocks<BlockQ4_1>(in, blocks, nb, qk);
    case QuantType::Q5_0:
      return quant_blocks<BlockQ5_0>(in, blocks, nb, qk);
    case QuantType::Q5_1:
      return quant_blocks<BlockQ5_1>(in, blocks, nb, qk);
    case QuantType::Q8_0:
      return quant_blocks<BlockQ8_0>(in, blocks, nb, qk);
    case QuantType::Q2_K:
      return quant_blocks<BlockQ2_K>(in, blocks, nb, qk);
    case QuantType::Q3_K:
      return quant_blocks<BlockQ3_K>(in, blocks, nb, qk);
    case QuantType::Q4_K:
      return quant_blocks<BlockQ4_K>(in, blocks, nb, qk);
    case QuantType::Q5_K:
      return quant_blocks<BlockQ5_K>(in, blocks, nb, qk);
    case QuantType::Q6_K:
      return quant_blocks<BlockQ6_K>(in, blocks, nb, qk);
  }
}

namespace quant {

void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n) {
  const int64_t nb = n / kQK_K;
  TAPML_REQUIRE(n >= 0 && n % kQK_K == 0,
                "quantize_row_q8_k: " + std::to_string(n) + " is not a multiple of 256");
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    BlockQ8_K& b = y[i];
    float max = 0, amax = 0;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) amax = ax, max = x[j];
    }
    if (amax == 0.0f) {
      b = BlockQ8_K{};
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK_K; ++j) b.qs[j] = int8_t(min_of(127, nearest_int(iscale * x[j])));
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b.qs[16 * g + l];
      b.bsums[g] = int16_t(sum);
    }
    b.d = 1 / iscale;
  }
}

}  // namespace quant

void activations_as_q8(QuantType t, const float* x, float* xhat, int64_t n) {
  if (quant_block_elems(t) == kQK_K) {
    TAPML_REQUIRE(n >= 0 && n % kQK_K == 0,
                  "activations_as_q8: " + std::to_string(n) + " is not a multiple of 256");
    BlockQ8_K b;
    for (int64_t i = 0; i < n; i += kQK_K) {
      quantize_row_q8_k(x + i, &b, kQK_K);
      for (int j = 0; j < kQK_K; ++j) xhat[i + j] = b.d * float(b.qs[j]);
    }
    return;
  }
  TAPML_REQUIRE(n >= 0 && n % kQK == 0,
                "activations_as_q8: " + std::to_string(n) + " is not a multiple of 32");
  BlockQ8_0 b;
  for (int64_t i = 0; i < n; i += kQK) {
    quantize_row(QuantType::Q8_0, x + i, &b, kQK);
    dequantize_row(QuantType::Q8_0, &b, xhat + i, kQK);
  }
}

}  // namespace tapml

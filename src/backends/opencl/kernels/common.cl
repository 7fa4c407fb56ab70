// Prefixed to every TapML OpenCL program. Tensors arrive as a buffer and a byte offset (a
// tensor may start anywhere the host put it; sub-buffers would need the device's base
// alignment); TENSOR() turns the pair into a typed pointer. Weights of any float dtype are
// read through W_T / LOAD_W, chosen at build time by -DWTYPE (0 f32, 1 f16, 2 bf16): f16 via
// vload_half, which needs no cl_khr_fp16, bf16 via a shift. exp, tanh and sigmoid with known
// accuracy for the ops whose tolerance a driver's own (3 to 5 ulp allowed) could exceed.
//
// Contraction of a * b + c into fma is off: the error-free steps below rely on each
// product and sum being rounded as written.
#pragma OPENCL FP_CONTRACT OFF

#define TENSOR(type, base, offset) ((global type*)((global uchar*)(base) + (offset)))
#define CTENSOR(type, base, offset) ((global const type*)((global const uchar*)(base) + (offset)))

#ifndef WTYPE
#define WTYPE 0
#endif
#if WTYPE == 1
#define W_T half
#define LOAD_W(p, i) vload_half((i), (p))
#elif WTYPE == 2
#define W_T ushort
#define LOAD_W(p, i) as_float(((uint)(p)[i]) << 16)
#else
#define W_T float
#define LOAD_W(p, i) ((p)[i])
#endif

// Eight weights from 16 bytes (w 16-byte aligned) as f32, and their fused dot product with
// eight values: the gemv kernels' and the attention chain's projection's inner step.
#if WTYPE == 1
// An f16 bit pattern as f32: subnormals through an exact integer conversion (no f32
// subnormal arithmetic, which a device may flush), normals by rebasing the exponent,
// all-ones exponents (Inf, NaN) kept.
inline float f16_bits(uint h) {
  uint em = h & 0x7fffu;
  float f = em < 0x400u ? (float)em * 0x1.0p-24f
                        : as_float(em >= 0x7c00u ? (em << 13) | 0x7f800000u : (em << 13) + 0x38000000u);
  return as_float(as_uint(f) | ((h & 0x8000u) << 16));
}
#endif

inline float8 load_w8(global const W_T* w) {
#if WTYPE == 0
  global const float4* p = (global const float4*)w;
  return (float8)(p[0], p[1]);
#else
  uint4 u = *(global const uint4*)w;
#if WTYPE == 1
  return (float8)(f16_bits(u.x & 0xffffu), f16_bits(u.x >> 16), f16_bits(u.y & 0xffffu),
                  f16_bits(u.y >> 16), f16_bits(u.z & 0xffffu), f16_bits(u.z >> 16),
                  f16_bits(u.w & 0xffffu), f16_bits(u.w >> 16));
#else
  return (float8)(as_float(u.x << 16), as_float(u.x & 0xffff0000u), as_float(u.y << 16),
                  as_float(u.y & 0xffff0000u), as_float(u.z << 16), as_float(u.z & 0xffff0000u),
                  as_float(u.w << 16), as_float(u.w & 0xffff0000u));
#endif
#endif
}

inline float dot8(float8 w, float8 x, float acc) {
  acc = fma(w.s0, x.s0, acc);
  acc = fma(w.s1, x.s1, acc);
  acc = fma(w.s2, x.s2, acc);
  acc = fma(w.s3, x.s3, acc);
  acc = fma(w.s4, x.s4, acc);
  acc = fma(w.s5, x.s5, acc);
  acc = fma(w.s6, x.s6, acc);
  return fma(w.s7, x.s7, acc);
}

#ifdef ROPE_F64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
// rope's angle for pair i < rd/2 at position p: freq from a host-made table (rd/2 doubles,
// then rd/2 floats), divided by freq_factors[i] when factors != 0. With ROPE_F64 (a device
// with cl_khr_fp64) the angle p * freq is formed and reduced modulo 2 pi in f64, so large
// positions keep their accuracy. rope.cl and the attention chain use it alike, so a fused
// rope gives the same bits.
inline float rope_angle(int p, uint i, uint rd, global const uchar* table,
                        global const uchar* fb, ulong fo, uint factors) {
#ifdef ROPE_F64
  double freq = ((global const double*)table)[i];
  if (factors) freq /= (double)CTENSOR(float, fb, fo)[i];
  double theta = (double)p * freq;
  const double two_pi = 6.283185307179586476925286766559;
  double r = theta - two_pi * floor(theta / two_pi + 0.5);
  return (float)r;
#else
  float freq = ((global const float*)(table + (size_t)(rd / 2) * 8))[i];
  if (factors) freq /= CTENSOR(float, fb, fo)[i];
  float theta = (float)p * freq;
  const float two_pi = 6.28318530717958647692f;
  return theta - two_pi * floor(theta / two_pi + 0.5f);
#endif
}

// A rope pair (ra, rb) rotated by angle a.
inline float2 rope_rotate(float ra, float rb, float a) {
  float cs = cos(a), sn = sin(a);
  return (float2)(ra * cs - rb * sn, ra * sn + rb * cs);
}

// exp within 2 ulp: Cody-Waite reduction by ln 2 (n * 0.693359375 is exact for |n| < 2^8)
// and Cephes' expf polynomial.
inline float exp_f32(float y) {
  y = clamp(y, -104.0f, 88.0f);
  float n = rint(y * 1.44269504088896341f);
  float r = (y - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = fma(p, r, 1.3981999507e-3f);
  p = fma(p, r, 8.3334519073e-3f);
  p = fma(p, r, 4.1665795894e-2f);
  p = fma(p, r, 1.6666665459e-1f);
  p = fma(p, r, 5.0000001201e-1f);
  return ldexp(fma(p, r * r, r) + 1.0f, (int)n);
}

// tanh within a few ulp, relative error included near 0 (where (e^2y - 1) / (e^2y + 1)
// loses every digit): Cephes' polynomial below 0.625, 1 - 2 / (e^2|y| + 1) above.
inline float tanh_f32(float y) {
  float a = fmin(fabs(y), 20.0f);
  if (a < 0.625f) {
    float z = y * y;
    float p = -5.70498872745e-3f;
    p = fma(p, z, 2.06390887954e-2f);
    p = fma(p, z, -5.37397155531e-2f);
    p = fma(p, z, 1.33314422036e-1f);
    p = fma(p, z, -3.33332819422e-1f);
    return fma(p * z, y, y);
  }
  float r = 1.0f - 2.0f / (exp_f32(2.0f * a) + 1.0f);
  return y < 0.0f ? -r : r;
}

// 1 / (1 + e^-z) without overflow: e^z / (1 + e^z) for z < 0.
inline float sigmoid_f32(float z) {
  if (z >= 0.0f) return 1.0f / (1.0f + exp_f32(-z));
  float e = exp_f32(z);
  return e / (1.0f + e);
}

#ifdef QTYPE
// ggml's quantized blocks (layouts in core/quant.h), for the programs built with -DQTYPE=ID
// (ggml's type id), so that each type's program holds only its own decoder. Blocks of 18, 22,
// 34, 110, 210 ... bytes sit at any byte offset, so they are read byte by byte. A row is cut
// into units of 16 consecutive elements that share their scales; dequant_unit() returns one
// unit with the arithmetic of core's dequantize_row: the same f32 operations in the same order
// (FP_CONTRACT is off above, so no multiply-add is fused), and f16 fields converted exactly in
// integer arithmetic.
#define Q4_0 2
#define Q4_1 3
#define Q5_0 6
#define Q5_1 7
#define Q8_0 8
#define Q2_K 10
#define Q3_K 11
#define Q4_K 12
#define Q5_K 13
#define Q6_K 14

#if QTYPE == Q4_0
#define QBLOCK_BYTES 18
#elif QTYPE == Q4_1
#define QBLOCK_BYTES 20
#elif QTYPE == Q5_0
#define QBLOCK_BYTES 22
#elif QTYPE == Q5_1
#define QBLOCK_BYTES 24
#elif QTYPE == Q8_0
#define QBLOCK_BYTES 34
#elif QTYPE == Q2_K
#define QBLOCK_BYTES 84
#elif QTYPE == Q3_K
#define QBLOCK_BYTES 110
#elif QTYPE == Q4_K
#define QBLOCK_BYTES 144
#elif QTYPE == Q5_K
#define QBLOCK_BYTES 176
#elif QTYPE == Q6_K
#define QBLOCK_BYTES 210
#else
#error "QTYPE is not a block type this backend decodes"
#endif
#define QBLOCK_UNITS (QTYPE >= Q2_K ? 16u : 2u)  // 16-element units per block

// IEEE half bits to f32, exactly, subnormal halves included (ggml's small scales can be
// subnormal halves, which a device may flush in its own conversion).
inline float half_bits_to_f32(uint h) {
  uint sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0x1Fu) return as_float(sign | 0x7F800000u | (m << 13));
  if (e == 0u) {
    if (m == 0u) return as_float(sign);
    // m * 2^-24: the leading one moves to bit 10; the f32 exponent is then msb + 103.
    uint msb = 31u - clz(m);
    return as_float(sign | ((msb + 103u) << 23) | (((m << (10u - msb)) & 0x3FFu) << 13));
  }
  return as_float(sign | ((e + 112u) << 23) | (m << 13));
}
inline float qhalf(global const uchar* p) { return half_bits_to_f32(p[0] | ((uint)p[1] << 8)); }

#if QTYPE == Q8_0
// x = qs[16 ub + l] * d, qs signed bytes.
inline void dequant_block_unit(global const uchar* b, uint ub, float* v) {
  float d = qhalf(b);
  global const uchar* qs = b + 2 + 16u * ub;
  for (uint l = 0; l < 16u; ++l) v[l] = (float)as_char(qs[l]) * d;
}

#elif QTYPE < Q2_K
// Q4_0, Q4_1, Q5_0, Q5_1: unit ub (0, 1) holds elements 16 ub + l, the low (ub 0) or high
// (ub 1) nibbles of qs[l], with the fifth bit, for Q5, in bit 16 ub + l of qh.
// Q4_0/Q5_0: x = (q - 8 or 16) * d; Q4_1/Q5_1: x = q * d + m.
#define QHAS_MIN (QTYPE == Q4_1 || QTYPE == Q5_1)
#define QFIVE (QTYPE == Q5_0 || QTYPE == Q5_1)
inline void dequant_block_unit(global const uchar* b, uint ub, float* v) {
  float d = qhalf(b);
#if QHAS_MIN
  float m = qhalf(b + 2);
  global const uchar* p = b + 4;
#else
  global const uchar* p = b + 2;
#endif
#if QFIVE
  uint qh = p[0] | ((uint)p[1] << 8) | ((uint)p[2] << 16) | ((uint)p[3] << 24);
  p += 4;
#endif
  for (uint l = 0; l < 16u; ++l) {
    int q = (p[l] >> (4u * ub)) & 0xF;
#if QFIVE
    q |= (int)(((qh >> (l + 16u * ub)) & 1u) << 4);
#endif
#if QHAS_MIN
    v[l] = (float)q * d + m;
#else
    v[l] = (float)(q - (QFIVE ? 16 : 8)) * d;
#endif
  }
}

#elif QTYPE == Q2_K
// Unit g (0..15) takes the 2-bit plane at shift 2 ((g % 8) / 2) of bytes 16 (g % 2) + l of the
// g / 8-th half's 32 quant bytes: x = (d * (sc & 15)) * q - dmin * (sc >> 4), sc = scales[g].
inline void dequant_block_unit(global const uchar* b, uint g, float* v) {
  uint sc = b[g], shift = ((g & 7u) >> 1) * 2u;
  float d = qhalf(b + 80), dmin = qhalf(b + 82);
  float dl = d * (float)(sc & 0xFu);
  float ml = dmin * (float)(sc >> 4);
  global const uchar* qs = b + 16 + (g >> 3) * 32u + (g & 1u) * 16u;
  for (uint l = 0; l < 16u; ++l) v[l] = dl * (float)((qs[l] >> shift) & 3u) - ml;
}

#elif QTYPE == Q3_K
// As Q2_K's planes; x = (d * (s_g - 32)) * (q - 4 * !(bit g / 2 of hmask[16 (g % 2) + l])),
// s_g the 6-bit scale of group g (low nibbles in bytes 0..7, top 2 bits in bytes 8..11).
inline void dequant_block_unit(global const uchar* b, uint g, float* v) {
  global const uchar* sb = b + 96;
  uint low = g < 8u ? sb[g] & 0xFu : sb[g - 8u] >> 4;
  uint high = (sb[8u + (g & 3u)] >> (2u * (g >> 2))) & 3u;
  float d = qhalf(b + 108);
  float dl = d * (float)((int)(low | (high << 4)) - 32);
  uint shift = ((g & 7u) >> 1) * 2u, bit = g >> 1;
  global const uchar* qs = b + 32 + (g >> 3) * 32u + (g & 1u) * 16u;
  global const uchar* hm = b + (g & 1u) * 16u;
  for (uint l = 0; l < 16u; ++l) {
    int q = (int)((qs[l] >> shift) & 3u) - (((hm[l] >> bit) & 1u) ? 0 : 4);
    v[l] = dl * (float)q;
  }
}

#elif QTYPE == Q4_K || QTYPE == Q5_K
// Unit u (0..15) is half of group g = u / 2 (32 elements with their own 6-bit scale and min):
// the low (g even) or high (g odd) nibbles of bytes 16 (u % 2) + l of the g / 2-th chunk of 32
// quant bytes, for Q5_K plus 16 when bit g of qh[16 (u % 2) + l] is set.
// x = (d * sc) * q - dmin * m.
inline void dequant_block_unit(global const uchar* b, uint u, float* v) {
  uint g = u >> 1, l0 = (u & 1u) * 16u, sc, mn;
  global const uchar* sb = b + 4;
  if (g < 4u) {
    sc = sb[g] & 63u;
    mn = sb[g + 4u] & 63u;
  } else {
    sc = (sb[g + 4u] & 0xFu) | ((sb[g - 4u] >> 6) << 4);
    mn = (sb[g + 4u] >> 4) | ((sb[g] >> 6) << 4);
  }
  float d1 = qhalf(b) * (float)sc;
  float m1 = qhalf(b + 2) * (float)mn;
#if QTYPE == Q5_K
  global const uchar* qs = b + 48 + (g >> 1) * 32u + l0;
  global const uchar* qh = b + 16 + l0;
#else
  global const uchar* qs = b + 16 + (g >> 1) * 32u + l0;
#endif
  for (uint l = 0; l < 16u; ++l) {
    uint q = (qs[l] >> (4u * (g & 1u))) & 0xFu;
#if QTYPE == Q5_K
    q += ((qh[l] >> g) & 1u) ? 16u : 0u;
#endif
    v[l] = d1 * (float)q - m1;
  }
}

#else
// Q6_K: unit u (0..15) holds elements 16 u + l: half n = u / 8, quarter c = (u % 8) / 2 of it,
// byte l' = 16 (u % 2) + l; the low 4 bits are nibble c / 2 of ql[64 n + 32 (c % 2) + l'], the
// high 2 bits at shift 2 c of qh[32 n + l']. x = (d * scales[u]) * (q - 32), scales signed.
inline void dequant_block_unit(global const uchar* b, uint u, float* v) {
  uint n = u >> 3, c = (u & 7u) >> 1, l0 = (u & 1u) * 16u;
  float ds = qhalf(b + 208) * (float)as_char(b[192u + u]);
  global const uchar* ql = b + 64u * n + 32u * (c & 1u) + l0;
  global const uchar* qh = b + 128 + 32u * n + l0;
  for (uint l = 0; l < 16u; ++l) {
    uint lo = (ql[l] >> (4u * (c >> 1))) & 0xFu;
    uint hi = (qh[l] >> (2u * c)) & 3u;
    v[l] = ds * (float)((int)(lo | (hi << 4)) - 32);
  }
}
#endif

// Elements 16 u .. 16 u + 15 of the row whose blocks start at `row`.
inline void dequant_unit(global const uchar* row, uint u, float* v) {
  dequant_block_unit(row + (size_t)(u / QBLOCK_UNITS) * QBLOCK_BYTES, u % QBLOCK_UNITS, v);
}
#endif

#ifdef WG
// Every item's v summed (or its max taken) over the work-group, tree-reduced pairwise in
// red (WG floats, so long rows keep their accuracy); every item gets the result, and red is
// free again on return. Every item of the group must call it.
inline float group_sum(local float* red, uint tid, float v) {
  red[tid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (tid < s) red[tid] += red[tid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  v = red[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return v;
}
inline float group_max(local float* red, uint tid, float v) {
  red[tid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (tid < s) red[tid] = fmax(red[tid], red[tid + s]);
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  v = red[0];
  barrier(CLK_LOCAL_MEM_FENCE);
  return v;
}

// The ending of the matmuls that give each item partial sums of 4 token rows: the sums are
// tree-reduced over the group and item r < rows stores row r's total at out[r * N].
inline void store_rows4(local float (*red)[WG], uint tid, float a0, float a1, float a2, float a3,
                        uint rows, global float* out, uint N) {
  red[0][tid] = a0;
  red[1][tid] = a1;
  red[2][tid] = a2;
  red[3][tid] = a3;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (tid < s)
      for (uint r = 0; r < 4; ++r) red[r][tid] += red[r][tid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (tid < rows) out[(size_t)tid * N] = red[tid][0];
}
#endif

// Shared by every TapML compute shader: one push-constant block for all ops (byte offsets of
// each bound tensor inside its descriptor window, nine integer and two float parameters),
// a linear workgroup index over a 2-D grid (counts past maxComputeWorkGroupCount[0] spill
// into y), and a reader for weights of any float dtype from a uint buffer, which needs no
// 16-bit storage feature: f16 via unpackHalf2x16, bf16 via a shift; and exp, tanh and sigmoid
// with known accuracy, for the ops whose tolerance the driver's own would exceed; and rope's
// angle, for the shaders that define ROPE_TABLE_BINDING.
#extension GL_GOOGLE_include_directive : enable
#ifdef ROPE_F64
#extension GL_ARB_gpu_shader_fp64 : enable
#endif
layout(push_constant) uniform Params {
  uint o[17];  // byte offset of binding i's tensor inside its window
  uint u[9];   // integer parameters; u[7] is the weight dtype (0 f32, 1 f16, 2 bf16)
  float f[2];  // float parameters
} pc;

uint group_index() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

// A weight reader named NAME over the uint buffer BUF of binding BINDING.
#define WEIGHT_READER(NAME, BUF, BINDING)                          \
  float NAME(uint i) {                                              \
    uint t = pc.u[7];                                               \
    if (t == 0u) return uintBitsToFloat(BUF[pc.o[BINDING] / 4u + i]); \
    uint h = pc.o[BINDING] / 2u + i;                                \
    uint word = BUF[h >> 1];                                        \
    uint bits = (h & 1u) != 0u ? (word >> 16) : (word & 0xFFFFu);   \
    if (t == 1u) return unpackHalf2x16(bits).x;                     \
    return uintBitsToFloat(bits << 16);                             \
  }

// exp within 2 ulp whatever the driver's: Vulkan allows exp 3 + 2|y| ulp, and lavapipe's
// reaches 30 ulp at |y| = 12 and 270 near 88, which the tails below turn into relative error
// one for one. Cody-Waite reduction by ln 2 and Cephes' expf polynomial.
float exp_f32(float y) {
  y = clamp(y, -104.0, 88.0);
  float n = round(y * 1.44269504088896341);
  // n * 0.693359375 is exact (|n| < 2^8), and so is y minus it. `precise` keeps the compiler
  // (mesa reassociates inexact arithmetic, fma included) from folding the two steps into one
  // product with a rounded ln 2, which costs |n| * 2^-24 of relative error.
  precise float r = (y - n * 0.693359375) + n * 2.12194440e-4;
  float p = 1.9875691500e-4;
  p = fma(p, r, 1.3981999507e-3);
  p = fma(p, r, 8.3334519073e-3);
  p = fma(p, r, 4.1665795894e-2);
  p = fma(p, r, 1.6666665459e-1);
  p = fma(p, r, 5.0000001201e-1);
  return ldexp(fma(p, r * r, r) + 1.0, int(n));
}

// tanh within a few ulp, relative error included near 0: the driver's tanh may be formed as
// (e^2y - 1) / (e^2y + 1), whose cancellation loses every digit of tanh(y) ~ y for small y,
// and goes through the driver's exp. Below 0.625 Cephes' tanhf polynomial; above, 1 - 2 /
// (e^2|y| + 1) with exp_f32, which is 1 in f32 from |y| = 9.01 on (|y| is cut at 20, far
// past that, so that e^2|y| stays finite).
float tanh_f32(float y) {
  float a = min(abs(y), 20.0);
  if (a < 0.625) {
    float z = y * y;
    float p = -5.70498872745e-3;
    p = fma(p, z, 2.06390887954e-2);
    p = fma(p, z, -5.37397155531e-2);
    p = fma(p, z, 1.33314422036e-1);
    p = fma(p, z, -3.33332819422e-1);
    return fma(p * z, y, y);
  }
  float r = 1.0 - 2.0 / (exp_f32(2.0 * a) + 1.0);
  return y < 0.0 ? -r : r;
}

// 1 / (1 + e^-z) without overflow: e^z / (1 + e^z) for z < 0, whose e^z cannot overflow.
float sigmoid_f32(float z) {
  if (z >= 0.0) return 1.0 / (1.0 + exp_f32(-z));
  float e = exp_f32(z);
  return e / (1.0 + e);
}

#ifdef ROPE_TABLE_BINDING
// rope's angle for pair i < rd/2 at position p, for rope.comp and the attention chain alike
// (so a fused rope gives the same bits): freq from a host-made table at binding
// ROPE_TABLE_BINDING (rd/2 doubles, then rd/2 floats), divided by freq_factors[i] (binding
// ROPE_FACTORS_BINDING) with ROPE_FACTORS. With ROPE_F64 (a device with shaderFloat64) the
// angle p * freq is formed and reduced modulo 2 pi in f64, so large positions keep their
// accuracy, and the division by the factor is in f64 too, as the catalog's f64
// pow(base, -2i/rd) / factor.
layout(binding = ROPE_TABLE_BINDING) readonly buffer RopeTable { uint rope_table[]; };
#ifdef ROPE_FACTORS
layout(binding = ROPE_FACTORS_BINDING) readonly buffer RopeFactors { float rope_factors[]; };
#endif
float rope_angle(int p, uint i, uint rd) {
#ifdef ROPE_F64
  double freq = packDouble2x32(uvec2(rope_table[2u * i], rope_table[2u * i + 1u]));
#ifdef ROPE_FACTORS
  freq /= double(rope_factors[pc.o[ROPE_FACTORS_BINDING] / 4u + i]);
#endif
  double theta = double(p) * freq;
  const double two_pi = 6.283185307179586476925286766559LF;
  double r = theta - two_pi * floor(theta / two_pi + 0.5LF);
  return float(r);
#else
  float freq = uintBitsToFloat(rope_table[rd + i]);
#ifdef ROPE_FACTORS
  freq /= rope_factors[pc.o[ROPE_FACTORS_BINDING] / 4u + i];
#endif
  float theta = float(p) * freq;
  const float two_pi = 6.28318530717958647692;
  return theta - two_pi * floor(theta / two_pi + 0.5);
#endif
}
#endif

#ifdef QUANT_BINDING
// ggml's quantized blocks (layouts in core/quant.h), for the shaders that define QUANT_BINDING
// before including this file: binding QUANT_BINDING holds raw block bytes, read as uints
// (blocks of 18, 22, 34, 110, 210 ... bytes are not word aligned, so every read goes through
// byte addresses), and the block type is the specialization constant QTYPE (ggml's type id), so
// each type's pipeline holds only its own code. A row is cut into units of 16 consecutive
// elements that share their scales; dequant_unit() returns one unit with the arithmetic of
// core's dequantize_row: the same f32 operations in the same order, every one `precise` so
// that no multiply-add is fused, and f16 fields converted exactly in integer arithmetic.
layout(constant_id = 0) const uint QTYPE = 2u;
layout(binding = QUANT_BINDING) readonly buffer QuantBlocks { uint qb[]; };

const uint Q4_0 = 2u, Q4_1 = 3u, Q5_0 = 6u, Q5_1 = 7u, Q8_0 = 8u;
const uint Q2_K = 10u, Q3_K = 11u, Q4_K = 12u, Q5_K = 13u, Q6_K = 14u;

// Elements and bytes of one block of QTYPE.
uint quant_block_elems() { return QTYPE >= Q2_K ? 256u : 32u; }
uint quant_block_bytes() {
  if (QTYPE == Q4_0) return 18u;
  if (QTYPE == Q4_1) return 20u;
  if (QTYPE == Q5_0) return 22u;
  if (QTYPE == Q5_1) return 24u;
  if (QTYPE == Q8_0) return 34u;
  if (QTYPE == Q2_K) return 84u;
  if (QTYPE == Q3_K) return 110u;
  if (QTYPE == Q4_K) return 144u;
  if (QTYPE == Q5_K) return 176u;
  return 210u;  // Q6_K
}

uint qbyte(uint a) { return (qb[a >> 2] >> ((a & 3u) * 8u)) & 0xFFu; }

// The 4 bytes from byte address a, little-endian. The second word is read only when a is not
// word aligned, so a read ending at the end of the buffer stays inside it.
uint qword(uint a) {
  uint s = (a & 3u) * 8u, lo = qb[a >> 2];
  if (s == 0u) return lo;
  return (lo >> s) | (qb[(a >> 2) + 1u] << (32u - s));
}

// 16 bytes from byte address a: byte l is (r[l / 4] >> (8 * (l % 4))) & 0xFF.
uvec4 qbytes16(uint a) {
  uint s = (a & 3u) * 8u, i = a >> 2;
  uvec4 w = uvec4(qb[i], qb[i + 1u], qb[i + 2u], qb[i + 3u]);
  if (s == 0u) return w;
  uint w4 = qb[i + 4u];
  return uvec4((w.x >> s) | (w.y << (32u - s)), (w.y >> s) | (w.z << (32u - s)),
               (w.z >> s) | (w.w << (32u - s)), (w.w >> s) | (w4 << (32u - s)));
}
uint byte_of(uvec4 r, uint l) { return (r[l >> 2] >> ((l & 3u) * 8u)) & 0xFFu; }

// IEEE half bits to f32, exactly, subnormal halves included (a driver may flush those to zero
// in unpackHalf2x16, and ggml's small scales can be subnormal halves).
float half_to_f32(uint h) {
  uint sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0x1Fu) return uintBitsToFloat(sign | 0x7F800000u | (m << 13));
  if (e == 0u) {
    if (m == 0u) return uintBitsToFloat(sign);
    // m * 2^-24: move the leading one to bit 10; the f32 exponent is then msb + 103.
    int msb = findMSB(m);
    return uintBitsToFloat(sign | (uint(msb + 103) << 23) | ((m << uint(10 - msb)) & 0x3FFu) << 13);
  }
  return uintBitsToFloat(sign | ((e + 112u) << 23) | (m << 13));
}
float qhalf(uint a) { return half_to_f32(qbyte(a) | (qbyte(a + 1u) << 8)); }

// Q4_0, Q4_1, Q5_0, Q5_1: unit ub (0, 1) of the block at byte bb holds elements 16 ub + l,
// the low (ub 0) or high (ub 1) nibbles of qs[l], with the fifth bit, for Q5, in bit 16 ub + l
// of qh. Q4_0/Q5_0: x = q * d; Q4_1/Q5_1: x = q * d + m.
void dequant_legacy(uint bb, uint ub, out float v[16]) {
  const bool has_min = QTYPE == Q4_1 || QTYPE == Q5_1;
  const bool five = QTYPE == Q5_0 || QTYPE == Q5_1;
  float d = qhalf(bb), m = has_min ? qhalf(bb + 2u) : 0.0;
  uint p = bb + (has_min ? 4u : 2u);
  uint qh = five ? qword(p) : 0u;
  uvec4 qs = qbytes16(p + (five ? 4u : 0u));
  for (uint l = 0u; l < 16u; ++l) {
    int q = int((byte_of(qs, l) >> (4u * ub)) & 0xFu);
    if (five) q |= int(((qh >> (l + 16u * ub)) & 1u) << 4);
    if (!has_min) {
      precise float y = float(q - (five ? 16 : 8)) * d;
      v[l] = y;
    } else {
      precise float y = float(q) * d + m;
      v[l] = y;
    }
  }
}

// Q8_0: x = qs[16 ub + l] * d, qs signed bytes.
void dequant_q8_0(uint bb, uint ub, out float v[16]) {
  float d = qhalf(bb);
  uvec4 qs = qbytes16(bb + 2u + 16u * ub);
  for (uint l = 0u; l < 16u; ++l) {
    precise float y = float(bitfieldExtract(int(qs[l >> 2]), int((l & 3u) * 8u), 8)) * d;
    v[l] = y;
  }
}

// Q2_K and Q3_K: unit g (0..15) of a super-block takes the 2-bit plane at shift 2 ((g % 8) / 2)
// of bytes 16 (g % 2) + l of the g / 8-th half's 32 quant bytes. Q2_K: x = (d * (sc & 15)) * q -
// dmin * (sc >> 4), sc = scales[g]. Q3_K: x = (d * (s_g - 32)) * (q - 4 * !hmask bit g / 2 of
// byte 16 (g % 2) + l), s_g the 6-bit scale of group g.
void dequant_q2_q3_k(uint bb, uint g, out float v[16]) {
  uint half_ = g >> 3, shift = ((g & 7u) >> 1) * 2u, part = g & 1u;
  if (QTYPE == Q2_K) {
    uint sc = qbyte(bb + g);
    float d = qhalf(bb + 80u), dmin = qhalf(bb + 82u);
    precise float dl = d * float(sc & 0xFu);
    precise float ml = dmin * float(sc >> 4);
    uvec4 qs = qbytes16(bb + 16u + half_ * 32u + part * 16u);
    for (uint l = 0u; l < 16u; ++l) {
      precise float y = dl * float((byte_of(qs, l) >> shift) & 3u) - ml;
      v[l] = y;
    }
  } else {
    uint sb = bb + 96u;
    uint low = g < 8u ? qbyte(sb + g) & 0xFu : qbyte(sb + g - 8u) >> 4;
    uint high = (qbyte(sb + 8u + (g & 3u)) >> (2u * (g >> 2))) & 3u;
    float d = qhalf(bb + 108u);
    precise float dl = d * float(int(low | (high << 4)) - 32);
    uvec4 qs = qbytes16(bb + 32u + half_ * 32u + part * 16u);
    uvec4 hm = qbytes16(bb + part * 16u);
    for (uint l = 0u; l < 16u; ++l) {
      int q = int((byte_of(qs, l) >> shift) & 3u) - (((byte_of(hm, l) >> (g >> 1)) & 1u) != 0u ? 0 : 4);
      precise float y = dl * float(q);
      v[l] = y;
    }
  }
}

// Q4_K and Q5_K: unit u (0..15) is half of group g = u / 2 (32 elements, its own 6-bit scale and
// min): the low (g even) or high (g odd) nibbles of bytes 16 (u % 2) + l of the g / 2-th chunk of
// 32 quant bytes, for Q5_K plus 16 when bit g of qh[16 (u % 2) + l] is set.
// x = (d * sc) * q - dmin * m.
void dequant_q4_q5_k(uint bb, uint u, out float v[16]) {
  uint g = u >> 1, l0 = (u & 1u) * 16u;
  uint sb = bb + 4u, sc, mn;
  if (g < 4u) {
    sc = qbyte(sb + g) & 63u;
    mn = qbyte(sb + g + 4u) & 63u;
  } else {
    sc = (qbyte(sb + g + 4u) & 0xFu) | ((qbyte(sb + g - 4u) >> 6) << 4);
    mn = (qbyte(sb + g + 4u) >> 4) | ((qbyte(sb + g) >> 6) << 4);
  }
  float d = qhalf(bb), dmin = qhalf(bb + 2u);
  precise float d1 = d * float(sc);
  precise float m1 = dmin * float(mn);
  const bool five = QTYPE == Q5_K;
  uvec4 qs = qbytes16(bb + (five ? 48u : 16u) + (g >> 1) * 32u + l0);
  uvec4 qh = five ? qbytes16(bb + 16u + l0) : uvec4(0u);
  for (uint l = 0u; l < 16u; ++l) {
    uint q = (byte_of(qs, l) >> (4u * (g & 1u))) & 0xFu;
    if (five) q += ((byte_of(qh, l) >> g) & 1u) != 0u ? 16u : 0u;
    precise float y = d1 * float(q) - m1;
    v[l] = y;
  }
}

// Q6_K: unit u (0..15) holds elements 16 u + l: half n = u / 8, quarter c = (u % 8) / 2 of it,
// byte l' = 16 (u % 2) + l; the low 4 bits are nibble c / 2 of ql[64 n + 32 (c % 2) + l'], the
// high 2 bits at shift 2 c of qh[32 n + l']. x = (d * scales[u]) * (q - 32), scales signed.
void dequant_q6_k(uint bb, uint u, out float v[16]) {
  uint n = u >> 3, c = (u & 7u) >> 1, l0 = (u & 1u) * 16u;
  float d = qhalf(bb + 208u);
  int sc = bitfieldExtract(int(qbyte(bb + 192u + u)), 0, 8);
  precise float ds = d * float(sc);
  uvec4 ql = qbytes16(bb + 64u * n + 32u * (c & 1u) + l0);
  uvec4 qh = qbytes16(bb + 128u + 32u * n + l0);
  for (uint l = 0u; l < 16u; ++l) {
    uint lo = (byte_of(ql, l) >> (4u * (c >> 1))) & 0xFu;
    uint hi = (byte_of(qh, l) >> (2u * c)) & 3u;
    precise float y = ds * float(int(lo | (hi << 4)) - 32);
    v[l] = y;
  }
}

// Elements 16 u .. 16 u + 15 of the row whose blocks start at byte address row.
void dequant_unit(uint row, uint u, out float v[16]) {
  uint per_block = quant_block_elems() / 16u;
  uint bb = row + (u / per_block) * quant_block_bytes(), ub = u % per_block;
  if (QTYPE == Q8_0)
    dequant_q8_0(bb, ub, v);
  else if (QTYPE < Q2_K)
    dequant_legacy(bb, ub, v);
  else if (QTYPE == Q2_K || QTYPE == Q3_K)
    dequant_q2_q3_k(bb, ub, v);
  else if (QTYPE == Q4_K || QTYPE == Q5_K)
    dequant_q4_q5_k(bb, ub, v);
  else
    dequant_q6_k(bb, ub, v);
}
#endif

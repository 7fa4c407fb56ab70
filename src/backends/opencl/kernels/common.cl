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

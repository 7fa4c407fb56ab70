// Shared by every TapML compute shader: one push-constant block for all ops (byte offsets of
// each bound tensor inside its descriptor window, eight integer and two float parameters),
// a linear workgroup index over a 2-D grid (counts past maxComputeWorkGroupCount[0] spill
// into y), and a reader for weights of any float dtype from a uint buffer, which needs no
// 16-bit storage feature: f16 via unpackHalf2x16, bf16 via a shift; and exp, tanh and sigmoid
// with known accuracy, for the ops whose tolerance the driver's own would exceed.
#extension GL_GOOGLE_include_directive : enable
layout(push_constant) uniform Params {
  uint o[6];   // byte offset of binding i's tensor inside its window
  uint u[8];   // integer parameters; u[7] is the weight dtype (0 f32, 1 f16, 2 bf16)
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

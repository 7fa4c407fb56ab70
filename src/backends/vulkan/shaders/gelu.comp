#version 450
#include "common.glsl"
// gelu: u0 = n, u1 = approx (0: x * Phi(x); 1: the tanh form). Both are formed without the
// cancellation of 1 + erf and 1 + tanh, which erases every output below x = -5.3 (see the
// catalog's gelu and the cpu kernels, whose erfc this is). exp_f32 is common.glsl's.
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) writeonly buffer Out { float outv[]; };

// 0.5 * erfc(|v| / sqrt 2) = 0.5 * exp(-a^2) (1 + p(q)) / (1 + 2a), q = (a - 2) / (a + 2),
// p the cpu kernel's degree-10 fit. a^2 = v^2 / 2 is taken as hi + lo without rounding (hi
// from v cut to 12 significant bits, whose square is exact), so that the rounding of v^2
// does not become a relative error of v^2 * 2^-24 through the exp. (An fma residual would
// do on the cpu, but mesa may rewrite fma(v, v, -v*v), `precise` or not.)
float half_erfc(float v) {
  const float P[11] = float[](2.166778904e-05, -3.730590688e-04, -1.251374837e-03, 1.282442478e-03,
                              8.639491163e-03, -8.047966287e-03, -5.420572311e-02, 1.640536487e-01,
                              -1.660313010e-01, -9.276391566e-02, 2.769784033e-01);
  float ax = min(abs(v), 16.0);  // past 16 the result is 0 in f32
  float a = min(ax * 0.70710678118654752, 10.1);
  float q = (a - 2.0) / (a + 2.0);
  float p = P[0];
  for (int i = 1; i < 11; ++i) p = fma(p, q, P[i]);
  float r = (1.0 + p) / fma(2.0, a, 1.0);
  float vh = uintBitsToFloat(floatBitsToUint(ax) & 0xFFFFF000u);
  precise float hi = vh * vh;
  precise float lo = (ax + vh) * (ax - vh);
  return 0.5 * r * exp_f32(-0.5 * hi) * exp_f32(-0.5 * lo);
}

void main() {
  uint i = group_index() * 128u + gl_LocalInvocationID.x;
  if (i >= pc.u[0]) return;
  float v = x[pc.o[0] / 4u + i], y;
  if (pc.u[1] == 0u) {
    float h = half_erfc(v);
    y = v * (v < 0.0 ? h : 1.0 - h);
  } else {
    // x / (1 + exp(-2z)) = 0.5 x (1 + tanh z).
    float minus_2z =
        v * fma(-2.0 * 0.79788456080286535588 * 0.044715, v * v, -2.0 * 0.79788456080286535588);
    y = v / (1.0 + exp_f32(minus_2z));
  }
  outv[pc.o[1] / 4u + i] = y;
}

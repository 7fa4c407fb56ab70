// gelu: approx 0 is x * Phi(x), 1 the tanh form. Both are formed without the cancellation
// of 1 + erf and 1 + tanh, which erases every output below x = -5.3.

// 0.5 * erfc(|v| / sqrt 2) = 0.5 * exp(-a^2) (1 + p(q)) / (1 + 2a), q = (a - 2) / (a + 2),
// p a degree-10 fit. a^2 = v^2 / 2 is taken as hi + lo without rounding (hi from v cut to
// 12 significant bits, whose square is exact), so that the rounding of v^2 does not become
// a relative error of v^2 * 2^-24 through the exp.
inline float half_erfc(float v) {
  const float P[11] = {2.166778904e-05f,  -3.730590688e-04f, -1.251374837e-03f,
                       1.282442478e-03f,  8.639491163e-03f,  -8.047966287e-03f,
                       -5.420572311e-02f, 1.640536487e-01f,  -1.660313010e-01f,
                       -9.276391566e-02f, 2.769784033e-01f};
  float ax = fmin(fabs(v), 16.0f);  // past 16 the result is 0 in f32
  float a = fmin(ax * 0.70710678118654752f, 10.1f);
  float q = (a - 2.0f) / (a + 2.0f);
  float p = P[0];
  for (int i = 1; i < 11; ++i) p = fma(p, q, P[i]);
  float r = (1.0f + p) / fma(2.0f, a, 1.0f);
  float vh = as_float(as_uint(ax) & 0xFFFFF000u);
  float hi = vh * vh;
  float lo = (ax + vh) * (ax - vh);
  return 0.5f * r * exp_f32(-0.5f * hi) * exp_f32(-0.5f * lo);
}

kernel void gelu(global const uchar* xb, ulong xo, global uchar* ob, ulong oo, uint n,
                 uint approx) {
  uint i = get_global_id(0);
  if (i >= n) return;
  float v = CTENSOR(float, xb, xo)[i], y;
  if (approx == 0) {
    float h = half_erfc(v);
    y = v * (v < 0.0f ? h : 1.0f - h);
  } else {
    // x / (1 + exp(-2z)) = 0.5 x (1 + tanh z).
    float minus_2z = v * fma(-2.0f * 0.79788456080286535588f * 0.044715f, v * v,
                             -2.0f * 0.79788456080286535588f);
    y = v / (1.0f + exp_f32(minus_2z));
  }
  TENSOR(float, ob, oo)[i] = y;
}

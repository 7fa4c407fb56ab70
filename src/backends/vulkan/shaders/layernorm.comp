#version 450
#include "common.glsl"
// One workgroup per row, tree-reduced sums in shared memory. The mean is m0 + lo: m0 the f32
// mean, lo the mean of the deviations from it (the corrected two-pass algorithm, as the cpu
// kernel): for a row at 1000 +- 1, m0 alone is off by a good share of an ulp of 1000 in
// every output, while x - m0 is exact there and lo carries the rest. The variance is that
// of the deviations, never E[x^2] - E[x]^2. u0 = T, u1 = N, f0 = eps.
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer W { float w[]; };
layout(binding = 2) writeonly buffer Out { float outv[]; };
shared float red[128], red2[128];
void main() {
  uint t = group_index();
  uint T = pc.u[0], N = pc.u[1], tid = gl_LocalInvocationID.x;
  if (t >= T) return;
  uint xo = pc.o[0] / 4u + t * N, wo = pc.o[1] / 4u, oo = pc.o[2] / 4u + t * N;
  float s = 0.0;
  for (uint i = tid; i < N; i += 128u) s += x[xo + i];
  red[tid] = s;
  barrier();
  for (uint h = 64u; h > 0u; h >>= 1) {
    if (tid < h) red[tid] += red[tid + h];
    barrier();
  }
  float m0 = red[0] / float(N);
  barrier();
  float s1 = 0.0, s2 = 0.0;
  for (uint i = tid; i < N; i += 128u) {
    float d = x[xo + i] - m0;
    s1 += d;
    s2 += d * d;
  }
  red[tid] = s1;
  red2[tid] = s2;
  barrier();
  for (uint h = 64u; h > 0u; h >>= 1) {
    if (tid < h) {
      red[tid] += red[tid + h];
      red2[tid] += red2[tid + h];
    }
    barrier();
  }
  float lo = red[0] / float(N);
  float var = max(0.0, red2[0] / float(N) - lo * lo);
  float inv = 1.0 / sqrt(var + pc.f[0]);
  for (uint i = tid; i < N; i += 128u) outv[oo + i] = ((x[xo + i] - m0) - lo) * inv * w[wo + i];
}

#version 450
#include "common.glsl"
// One workgroup per row: strided partial sums of squares, then a tree reduction in shared
// memory (pairwise, so long rows keep their accuracy). u0 = T, u1 = D, f0 = eps.
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer W { uint w[]; };
layout(binding = 2) buffer Out { float outv[]; };
WEIGHT_READER(weight_at, w, 1)
shared float red[128];
void main() {
  uint t = group_index();
  uint T = pc.u[0], D = pc.u[1], tid = gl_LocalInvocationID.x;
  if (t >= T) return;
  uint xo = pc.o[0] / 4u + t * D, oo = pc.o[2] / 4u + t * D;
  float ss = 0.0;
  for (uint d = tid; d < D; d += 128u) ss += x[xo + d] * x[xo + d];
  red[tid] = ss;
  barrier();
  for (uint s = 64u; s > 0u; s >>= 1) {
    if (tid < s) red[tid] += red[tid + s];
    barrier();
  }
  float inv = 1.0 / sqrt(red[0] / float(D) + pc.f[0]);
  for (uint d = tid; d < D; d += 128u) outv[oo + d] = x[xo + d] * inv * weight_at(d);
}

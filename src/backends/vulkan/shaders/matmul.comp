#version 450
#include "common.glsl"
// out[t][n] = dot(x[t], w[n]). One workgroup per (weight row n, block of 4 token rows): each
// weight element is read once per block, partial dot products are strided over K and then
// tree-reduced in shared memory with f32 accumulation. u0 = T, u1 = K, u2 = N.
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer W { uint w[]; };
layout(binding = 2) writeonly buffer Out { float outv[]; };
WEIGHT_READER(weight_at, w, 1)
shared float red[4][64];
void main() {
  uint g = group_index();
  uint T = pc.u[0], K = pc.u[1], N = pc.u[2], tid = gl_LocalInvocationID.x;
  uint n = g % N, t0 = (g / N) * 4u;
  if (t0 >= T) return;
  uint rows = min(4u, T - t0);
  uint xo = pc.o[0] / 4u + t0 * K, wrow = n * K;
  float acc0 = 0.0, acc1 = 0.0, acc2 = 0.0, acc3 = 0.0;
  for (uint k = tid; k < K; k += 64u) {
    float wv = weight_at(wrow + k);
    acc0 += x[xo + k] * wv;
    if (rows > 1u) acc1 += x[xo + K + k] * wv;
    if (rows > 2u) acc2 += x[xo + 2u * K + k] * wv;
    if (rows > 3u) acc3 += x[xo + 3u * K + k] * wv;
  }
  red[0][tid] = acc0; red[1][tid] = acc1; red[2][tid] = acc2; red[3][tid] = acc3;
  barrier();
  for (uint s = 32u; s > 0u; s >>= 1) {
    if (tid < s)
      for (uint r = 0u; r < 4u; ++r) red[r][tid] += red[r][tid + s];
    barrier();
  }
  if (tid < rows) outv[pc.o[2] / 4u + (t0 + tid) * N + n] = red[tid][0];
}

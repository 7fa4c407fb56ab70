#version 450
#define QUANT_BINDING 1
#include "common.glsl"
// out[t][n] = dot(x[t], w[n]) with w of the block type QTYPE: matmul.comp's layout (one
// workgroup per weight row n and block of 4 token rows, partial dot products over K, a tree
// reduction in shared memory, f32 accumulation), each invocation taking 16-element units of
// the row (units tid, tid + 64, ...), dequantized once per block of token rows. u0 = T, u1 = K,
// u2 = N, u3 = the bytes of one weight row.
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 2) writeonly buffer Out { float outv[]; };
shared float red[4][64];
void main() {
  uint g = group_index();
  uint T = pc.u[0], K = pc.u[1], N = pc.u[2], tid = gl_LocalInvocationID.x;
  uint n = g % N, t0 = (g / N) * 4u;
  if (t0 >= T) return;
  uint rows = min(4u, T - t0);
  uint xo = pc.o[0] / 4u + t0 * K, wrow = pc.o[1] + n * pc.u[3];
  float acc0 = 0.0, acc1 = 0.0, acc2 = 0.0, acc3 = 0.0;
  for (uint u = tid; u < K / 16u; u += 64u) {
    float v[16];
    dequant_unit(wrow, u, v);
    uint k = xo + 16u * u;
    for (uint l = 0u; l < 16u; ++l) {
      acc0 += x[k + l] * v[l];
      if (rows > 1u) acc1 += x[k + K + l] * v[l];
      if (rows > 2u) acc2 += x[k + 2u * K + l] * v[l];
      if (rows > 3u) acc3 += x[k + 3u * K + l] * v[l];
    }
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

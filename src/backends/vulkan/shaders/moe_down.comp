#version 450
#include "common.glsl"
// moe_ffn's second half: out[t][d] = sum over the experts e routed from t (route != 0, in
// expert order) of route[t][e] * (down_e[d] . act[t][e]). One workgroup per (column d,
// block of 4 tokens); an expert none of the block's tokens routes to is skipped, and a
// token's products with an expert it does not route to are never formed, so nothing of an
// unchosen expert (its weights, its unwritten act rows) reaches the sum. Each invocation
// keeps route-weighted partial dot products over its share of H; one tree reduction at the
// end sums them. u0 = T, u1 = D, u2 = H, u3 = E; down's dtype is u7.
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer Act { float act[]; };
layout(binding = 1) readonly buffer R { float route[]; };
layout(binding = 2) readonly buffer W { uint dw[]; };
layout(binding = 3) writeonly buffer Out { float outv[]; };
WEIGHT_READER(down_at, dw, 2)
shared float red[4][64];
void main() {
  uint g = group_index();
  uint T = pc.u[0], D = pc.u[1], H = pc.u[2], E = pc.u[3], tid = gl_LocalInvocationID.x;
  uint d = g % D, t0 = (g / D) * 4u;
  if (t0 >= T) return;
  uint rows = min(4u, T - t0);
  uint rb = pc.o[1] / 4u + t0 * E, ab = pc.o[0] / 4u + t0 * E * H;
  float acc[4] = float[](0.0, 0.0, 0.0, 0.0);
  for (uint e = 0u; e < E; ++e) {
    float r[4] = float[](0.0, 0.0, 0.0, 0.0);
    bool any = false;
    for (uint i = 0u; i < rows; ++i) {
      r[i] = route[rb + i * E + e];
      any = any || r[i] != 0.0;
    }
    if (!any) continue;
    uint wrow = (e * D + d) * H;
    float p[4] = float[](0.0, 0.0, 0.0, 0.0);
    for (uint k = tid; k < H; k += 64u) {
      float wv = down_at(wrow + k);
      for (uint i = 0u; i < rows; ++i)
        if (r[i] != 0.0) p[i] += act[ab + (i * E + e) * H + k] * wv;
    }
    for (uint i = 0u; i < rows; ++i)
      if (r[i] != 0.0) acc[i] += r[i] * p[i];
  }
  for (uint i = 0u; i < 4u; ++i) red[i][tid] = acc[i];
  barrier();
  for (uint s = 32u; s > 0u; s >>= 1) {
    if (tid < s)
      for (uint i = 0u; i < 4u; ++i) red[i][tid] += red[i][tid + s];
    barrier();
  }
  if (tid < rows) outv[pc.o[3] / 4u + (t0 + tid) * D + d] = red[tid][0];
}

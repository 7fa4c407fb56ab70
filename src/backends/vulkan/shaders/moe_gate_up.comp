#version 450
#include "common.glsl"
// moe_ffn's first half: act[t][e][h] = silu(gate_e[h] . x[t]) * (up_e[h] . x[t]) for every
// token t routed to expert e. One workgroup per (expert e, row h, block of 4 tokens), as
// matmul's: each weight element is read once per block, and a block none of whose tokens
// routes to e returns at once, so an unchosen expert's weights (which may hold anything)
// are never read. Rows of unchosen (t, e) are left as they were; moe_down never reads them.
// u0 = T, u1 = D, u2 = H, u3 = E; gate, up and down share the dtype u7.
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer R { float route[]; };
layout(binding = 2) readonly buffer G { uint gw[]; };
layout(binding = 3) readonly buffer U { uint uw[]; };
layout(binding = 4) writeonly buffer Act { float act[]; };
WEIGHT_READER(gate_at, gw, 2)
WEIGHT_READER(up_at, uw, 3)
shared float red[8][64];
void main() {
  uint g = group_index();
  uint T = pc.u[0], D = pc.u[1], H = pc.u[2], E = pc.u[3], tid = gl_LocalInvocationID.x;
  uint eh = g % (E * H), t0 = (g / (E * H)) * 4u;
  if (t0 >= T) return;
  uint e = eh / H, h = eh % H, rows = min(4u, T - t0);
  uint rb = pc.o[1] / 4u + t0 * E + e;
  bool any = false;
  for (uint r = 0u; r < rows; ++r) any = any || route[rb + r * E] != 0.0;
  if (!any) return;  // the same for every invocation of the workgroup
  uint xo = pc.o[0] / 4u + t0 * D, wrow = (e * H + h) * D;
  float g0 = 0.0, g1 = 0.0, g2 = 0.0, g3 = 0.0, u0 = 0.0, u1 = 0.0, u2 = 0.0, u3 = 0.0;
  for (uint k = tid; k < D; k += 64u) {
    float gv = gate_at(wrow + k), uv = up_at(wrow + k);
    float x0 = x[xo + k];
    g0 += x0 * gv;
    u0 += x0 * uv;
    if (rows > 1u) {
      float x1 = x[xo + D + k];
      g1 += x1 * gv;
      u1 += x1 * uv;
    }
    if (rows > 2u) {
      float x2 = x[xo + 2u * D + k];
      g2 += x2 * gv;
      u2 += x2 * uv;
    }
    if (rows > 3u) {
      float x3 = x[xo + 3u * D + k];
      g3 += x3 * gv;
      u3 += x3 * uv;
    }
  }
  red[0][tid] = g0; red[1][tid] = g1; red[2][tid] = g2; red[3][tid] = g3;
  red[4][tid] = u0; red[5][tid] = u1; red[6][tid] = u2; red[7][tid] = u3;
  barrier();
  for (uint s = 32u; s > 0u; s >>= 1) {
    if (tid < s)
      for (uint r = 0u; r < 8u; ++r) red[r][tid] += red[r][tid + s];
    barrier();
  }
  if (tid < rows && route[rb + tid * E] != 0.0) {
    float gs = red[tid][0], us = red[4u + tid][0];
    act[pc.o[4] / 4u + ((t0 + tid) * E + e) * H + h] = gs / (1.0 + exp_f32(-gs)) * us;
  }
}

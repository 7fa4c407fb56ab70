#version 450
#include "common.glsl"
// One workgroup per token row. Expert e is chosen when fewer than k experts rank above it:
// a larger logit, or an equal logit at a lower index (the catalog's tie rule, decided on
// the logits, not on the rounded p). The softmax's max, its sum and the chosen p's sum are
// tree-reduced in shared memory; p uses exp_f32. u0 = T, u1 = E, u2 = k, u3 = norm.
layout(local_size_x = 64) in;
layout(binding = 0) readonly buffer L { float logits[]; };
layout(binding = 1) writeonly buffer Out { float route[]; };
shared float red[64], red2[64];

uint rank(uint lb, uint E, uint e) {
  float le = logits[lb + e];
  uint above = 0u;
  for (uint j = 0u; j < E; ++j) {
    float lj = logits[lb + j];
    if (lj > le || (lj == le && j < e)) ++above;
  }
  return above;
}

void main() {
  uint t = group_index();
  uint T = pc.u[0], E = pc.u[1], k = pc.u[2], tid = gl_LocalInvocationID.x;
  if (t >= T) return;
  uint lb = pc.o[0] / 4u + t * E, ob = pc.o[1] / 4u + t * E;
  float mx = -1.0 / 0.0;
  for (uint e = tid; e < E; e += 64u) mx = max(mx, logits[lb + e]);
  red[tid] = mx;
  barrier();
  for (uint h = 32u; h > 0u; h >>= 1) {
    if (tid < h) red[tid] = max(red[tid], red[tid + h]);
    barrier();
  }
  mx = red[0];
  barrier();
  float sum = 0.0, chosen = 0.0;
  for (uint e = tid; e < E; e += 64u) {
    float p = exp_f32(logits[lb + e] - mx);
    sum += p;
    if (rank(lb, E, e) < k) chosen += p;
  }
  red[tid] = sum;
  red2[tid] = chosen;
  barrier();
  for (uint h = 32u; h > 0u; h >>= 1) {
    if (tid < h) {
      red[tid] += red[tid + h];
      red2[tid] += red2[tid + h];
    }
    barrier();
  }
  // p / sum, or p / (sum of the chosen p): (p / sum) / (chosen / sum) with one rounding less.
  float inv = 1.0 / (pc.u[3] != 0u ? red2[0] : red[0]);
  for (uint e = tid; e < E; e += 64u)
    route[ob + e] = rank(lb, E, e) < k ? exp_f32(logits[lb + e] - mx) * inv : 0.0;
}

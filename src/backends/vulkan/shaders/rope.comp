#version 450
#define ROPE_TABLE_BINDING 3
#define ROPE_FACTORS_BINDING 4
#include "common.glsl"
// One invocation per (row, head, i), i < hd - rd/2: i < rd/2 rotates pair i by rope_angle()
// (common.glsl), the rest copy one unrotated element. Whole pairs per invocation keep in-place
// calls (out == x) safe. u0 = T, u1 = H, u2 = hd, u3 = rd, u4 = neox.
// ROPE_F64: the angle in f64 (where the device has it); ROPE_FACTORS: each frequency divided
// by the optional input freq_factors[i] (binding 4). ROPE_PAIR: invocations from u5 on rotate
// a second tensor (binding 5, u6 heads) into binding 6 with the same positions and
// frequencies: q and k in one dispatch.
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer Pos { int pos[]; };
layout(binding = 2) writeonly buffer Out { float outv[]; };
#ifdef ROPE_PAIR
layout(binding = 5) readonly buffer X2 { float x2[]; };
layout(binding = 6) writeonly buffer Out2 { float out2[]; };
#endif

// Element i of the input head and of the output head (of the second tensor when `second`).
float load(bool second, uint i) {
#ifdef ROPE_PAIR
  if (second) return x2[pc.o[5] / 4u + i];
#endif
  return x[pc.o[0] / 4u + i];
}
void store(bool second, uint i, float v) {
#ifdef ROPE_PAIR
  if (second) {
    out2[pc.o[6] / 4u + i] = v;
    return;
  }
#endif
  outv[pc.o[2] / 4u + i] = v;
}

void main() {
  uint T = pc.u[0], H = pc.u[1], hd = pc.u[2], rd = pc.u[3];
  bool neox = pc.u[4] != 0u;
  uint per_head = hd - rd / 2u;
  uint idx = group_index() * 128u + gl_LocalInvocationID.x;
  bool second = false;
#ifdef ROPE_PAIR
  if (idx >= pc.u[5]) {
    idx -= pc.u[5];
    H = pc.u[6];
    second = true;
  }
#endif
  if (idx >= T * H * per_head) return;
  uint i = idx % per_head, th = idx / per_head, t = th / H, h = th % H;
  uint head = t * H * hd + h * hd;
  if (i >= rd / 2u) {
    uint d = rd + (i - rd / 2u);
    store(second, head + d, load(second, head + d));
    return;
  }
  float a = rope_angle(pos[pc.o[1] / 4u + t], i, rd);
  float cs = cos(a), sn = sin(a);
  uint ia = neox ? i : 2u * i, ib = neox ? i + rd / 2u : 2u * i + 1u;
  float ra = load(second, head + ia), rb = load(second, head + ib);
  store(second, head + ia, ra * cs - rb * sn);
  store(second, head + ib, ra * sn + rb * cs);
}

#version 450
#include "common.glsl"
// Rows pos..pos+T-1 of both caches receive k and v (pos was range-checked on the host).
// u0 = T * C, u1 = C.
layout(local_size_x = 128) in;
layout(binding = 0) writeonly buffer KC { float kc[]; };
layout(binding = 1) writeonly buffer VC { float vc[]; };
layout(binding = 2) readonly buffer K { float k[]; };
layout(binding = 3) readonly buffer V { float v[]; };
layout(binding = 4) readonly buffer Pos { int pos[]; };
void main() {
  uint i = group_index() * 128u + gl_LocalInvocationID.x;
  if (i >= pc.u[0]) return;
  uint dst = uint(pos[pc.o[4] / 4u]) * pc.u[1] + i;
  kc[pc.o[0] / 4u + dst] = k[pc.o[2] / 4u + i];
  vc[pc.o[1] / 4u + dst] = v[pc.o[3] / 4u + i];
}

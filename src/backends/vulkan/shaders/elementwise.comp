#version 450
#include "common.glsl"
// swiglu (u1 = 0): out = a * sigmoid(a) * b;  add (u1 = 1): out = a + b.  u0 = n.
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer A { float a[]; };
layout(binding = 1) readonly buffer B { float b[]; };
layout(binding = 2) writeonly buffer Out { float outv[]; };
void main() {
  uint i = group_index() * 128u + gl_LocalInvocationID.x;
  if (i >= pc.u[0]) return;
  float av = a[pc.o[0] / 4u + i], bv = b[pc.o[1] / 4u + i];
  outv[pc.o[2] / 4u + i] = pc.u[1] == 0u ? av / (1.0 + exp(-av)) * bv : av + bv;
}

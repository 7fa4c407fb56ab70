#version 450
#include "common.glsl"
// sigmoid_gate: out[t, i] = x[t, i] * sigmoid(g[t]), the sigmoid formed without overflow.
// u0 = T * N, u1 = N.
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) readonly buffer G { float g[]; };
layout(binding = 2) writeonly buffer Out { float outv[]; };
void main() {
  uint i = group_index() * 128u + gl_LocalInvocationID.x;
  if (i >= pc.u[0]) return;
  float s = sigmoid_f32(g[pc.o[1] / 4u + i / pc.u[1]]);
  outv[pc.o[2] / 4u + i] = x[pc.o[0] / 4u + i] * s;
}

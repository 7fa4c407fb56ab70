#version 450
#include "common.glsl"
// softcap: out = f0 * tanh(x / f0), f0 = cap > 0; tanh_f32 keeps tanh(y) ~ y near 0 and is
// exactly +-1 where the op saturates. u0 = n.
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer X { float x[]; };
layout(binding = 1) writeonly buffer Out { float outv[]; };
void main() {
  uint i = group_index() * 128u + gl_LocalInvocationID.x;
  if (i >= pc.u[0]) return;
  float cap = pc.f[0];
  outv[pc.o[1] / 4u + i] = cap * tanh_f32(x[pc.o[0] / 4u + i] / cap);
}

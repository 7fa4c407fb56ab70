#version 450
#include "common.glsl"
// u1 picks the function; u0 = n.
//   0 swiglu: out = a * sigmoid(a) * b     1 add:   out = a + b
//   2 bias:   out = a + b[i % u2]          3 mul:   out = a * b
//   4 scale:  out = a * f0 (b is not read)
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer A { float a[]; };
layout(binding = 1) readonly buffer B { float b[]; };
layout(binding = 2) writeonly buffer Out { float outv[]; };
void main() {
  uint i = group_index() * 128u + gl_LocalInvocationID.x;
  if (i >= pc.u[0]) return;
  uint fn = pc.u[1];
  float av = a[pc.o[0] / 4u + i], y;
  if (fn == 4u) {
    y = av * pc.f[0];
  } else {
    float bv = b[pc.o[1] / 4u + (fn == 2u ? i % pc.u[2] : i)];
    if (fn == 0u)
      y = av / (1.0 + exp(-av)) * bv;
    else if (fn == 3u)
      y = av * bv;
    else
      y = av + bv;
  }
  outv[pc.o[2] / 4u + i] = y;
}

#version 450
#define QUANT_BINDING 0
#include "common.glsl"
// out[t] = the dequantized row ids[t] of a table of the block type QTYPE, bit for bit as
// core's dequantize_row; ids were range-checked on the host. One invocation per 16-element
// unit of an output row. u0 = T, u1 = D, u3 = the bytes of one table row.
layout(local_size_x = 128) in;
layout(binding = 1) readonly buffer Ids { int ids[]; };
layout(binding = 2) writeonly buffer Out { float outv[]; };
void main() {
  uint i = group_index() * 128u + gl_LocalInvocationID.x;
  uint T = pc.u[0], D = pc.u[1], units = D / 16u;
  if (i >= T * units) return;
  uint t = i / units, u = i % units;
  uint id = uint(ids[pc.o[1] / 4u + t]);
  float v[16];
  dequant_unit(pc.o[0] + id * pc.u[3], u, v);
  uint o = pc.o[2] / 4u + t * D + 16u * u;
  for (uint l = 0u; l < 16u; ++l) outv[o + l] = v[l];
}

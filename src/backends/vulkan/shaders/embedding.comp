#version 450
#include "common.glsl"
// out[t][d] = table[ids[t]][d]; ids were range-checked on the host. u0 = T, u1 = D.
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer Table { uint table[]; };
layout(binding = 1) readonly buffer Ids { int ids[]; };
layout(binding = 2) writeonly buffer Out { float outv[]; };
WEIGHT_READER(table_at, table, 0)
void main() {
  uint i = group_index() * 128u + gl_LocalInvocationID.x;
  uint T = pc.u[0], D = pc.u[1];
  if (i >= T * D) return;
  uint t = i / D, d = i % D;
  uint id = uint(ids[pc.o[1] / 4u + t]);
  outv[pc.o[2] / 4u + i] = table_at(id * D + d);
}

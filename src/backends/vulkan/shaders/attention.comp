#version 450
#include "common.glsl"
// One workgroup per (query row t, head h). Scores go to a scratch row of P floats (keys can
// outnumber shared memory); max and sum are tree-reduced in shared memory, and each output
// dimension's weighted sum over keys is split over the workgroup's invocations and
// tree-reduced too, so long contexts keep f32 accuracy.
// u0 = T, u1 = P, u2 = H, u3 = KV, u4 = hd; f0 = scale.
// ATTENTION_OPTIONS (the variant attention_options) adds the catalog's optional attributes:
// u5 = window (0: none; row t then sees keys last - window + 1 .. last), f1 = softcap (0:
// none; each scaled score s becomes softcap * tanh(s / softcap), tanh_f32 from common.glsl).
// Without it the shader is the one calls without those attributes have always run.
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer Q { float q[]; };
layout(binding = 1) readonly buffer K { float k[]; };
layout(binding = 2) readonly buffer V { float v[]; };
layout(binding = 3) writeonly buffer Out { float outv[]; };
layout(binding = 4) buffer S { float score[]; };
shared float red[128];
void main() {
  uint g = group_index();
  uint T = pc.u[0], P = pc.u[1], H = pc.u[2], KV = pc.u[3], hd = pc.u[4];
  uint tid = gl_LocalInvocationID.x;
  if (g >= T * H) return;
  uint t = g / H, h = g % H, kh = h / (H / KV);
  uint last = P - T + t;
#ifdef ATTENTION_OPTIONS
  uint window = pc.u[5];
  uint first = window != 0u && last + 1u > window ? last + 1u - window : 0u;
  float cap = pc.f[1];
#else
  const uint first = 0u;
#endif
  uint qb = pc.o[0] / 4u + t * H * hd + h * hd;
  uint kw = KV * hd;
  uint kb = pc.o[1] / 4u + kh * hd, vb = pc.o[2] / 4u + kh * hd;
  uint sb = pc.o[4] / 4u + g * P;
  float mx = -1.0 / 0.0;
  for (uint j = first + tid; j <= last; j += 128u) {
    float s = 0.0;
    for (uint i = 0u; i < hd; ++i) s += q[qb + i] * k[kb + j * kw + i];
    s *= pc.f[0];
#ifdef ATTENTION_OPTIONS
    if (cap > 0.0) s = cap * tanh_f32(s / cap);
#endif
    score[sb + j] = s;
    mx = max(mx, s);
  }
  red[tid] = mx;
  barrier();
  for (uint s = 64u; s > 0u; s >>= 1) {
    if (tid < s) red[tid] = max(red[tid], red[tid + s]);
    barrier();
  }
  mx = red[0];
  barrier();
  float sum = 0.0;
  for (uint j = first + tid; j <= last; j += 128u) {
    float e = exp(score[sb + j] - mx);
    score[sb + j] = e;
    sum += e;
  }
  red[tid] = sum;
  barrier();
  for (uint s = 64u; s > 0u; s >>= 1) {
    if (tid < s) red[tid] += red[tid + s];
    barrier();
  }
  float inv = 1.0 / red[0];
  memoryBarrierBuffer();
  barrier();
  // Invocations split into `lanes` groups over keys for each of `dims` output dimensions.
  uint dims = min(hd, 128u), lanes = 128u / dims;
  uint ob = pc.o[3] / 4u + t * H * hd + h * hd;
  for (uint i0 = 0u; i0 < hd; i0 += dims) {
    uint i = i0 + tid % dims, lane = tid / dims;
    float acc = 0.0;
    if (lane < lanes && i < hd)
      for (uint j = first + lane; j <= last; j += lanes) acc += score[sb + j] * v[vb + j * kw + i];
    red[tid] = acc;
    barrier();
    if (tid < dims && i < hd) {
      float total = 0.0;
      for (uint l = 0u; l < lanes; ++l) total += red[l * dims + tid];
      outv[ob + i] = total * inv;
    }
    barrier();
  }
}

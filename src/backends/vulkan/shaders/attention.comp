#version 450
// One workgroup per (query row t, head h). Scores go to a scratch row of P floats (keys can
// outnumber shared memory); max and sum are tree-reduced in shared memory, and each output
// dimension's weighted sum over keys is split over the workgroup's invocations and
// tree-reduced too, so long contexts keep f32 accuracy.
// u0 = T, u1 = P, u2 = H, u3 = KV, u4 = hd; f0 = scale.
// ATTENTION_OPTIONS (the variant attention_options) adds the catalog's optional attributes:
// u5 = window (0: none; row t then sees keys last - window + 1 .. last), f1 = softcap (0:
// none; each scaled score s becomes softcap * tanh(s / softcap), tanh_f32 from common.glsl).
// Without it the shader is the one calls without those attributes have always run.
//
// ATTENTION_ROPE (the attention_rope* variants, ROPE_F64 and ROPE_FACTORS as for rope.comp):
// a decode step's rope q, rope k, kv_store and attention as one dispatch (call_fusion.h's
// AttentionChain), with the options. One query row at position pos = P - 1 (T = 1), one
// workgroup per head h: binding 0 is q before rope; the workgroup rotates its q head (into
// binding 9) and its key head kh (binding 7) into shared memory, and the first workgroup of
// each key head (h % (H / KV) == 0) also writes the rotated k head (binding 10) and row pos of
// both caches (bindings 1 and 2: k rotated, v copied from binding 8). It then attends over
// cache rows first..pos - 1 and, for row pos, its own rotated key and v, since another
// workgroup may still be writing that row. Rope arithmetic as rope.comp's (rope_angle() at
// bindings 5, 6), attention's as below, so the same bits as the four calls one by one.
// u6 = rope_dim, u7 = neox (no weights here).
//
// ATTENTION_PROJ (the attention_rope*_proj variants, with ATTENTION_ROPE): also the output
// projection y = a W^T (W [D, H * hd] at binding 11, of dtype WTYPE, specialization constant
// 0) and the residual add x = r + y (y, r, x: bindings 12, 13, 14, one row of D). Each head's
// workgroup multiplies its output by its hd columns of W, for every row, into partial[h][0..D)
// (binding 15), then counts itself done on a device counter (binding 16). The workgroup that
// counts last sums the H partials in head order (the same bits whichever finishes last) into
// y and x, and sets the counter back to 0 for the next dispatch. No workgroup waits for
// another, so any order or concurrency of workgroups gives the same result. Weights are read
// 16 bytes at a time: hd % 8 == 0 and W 16-byte aligned (the backend checks). u8 = D.
#ifdef ATTENTION_ROPE
#define ATTENTION_OPTIONS
#define ROPE_TABLE_BINDING 5
#define ROPE_FACTORS_BINDING 6
#define CACHE_ACCESS  // row pos is written
#else
#define CACHE_ACCESS readonly
#endif
#include "common.glsl"
layout(local_size_x = 128) in;
layout(binding = 0) readonly buffer Q { float q[]; };
layout(binding = 1) CACHE_ACCESS buffer K { float k[]; };
layout(binding = 2) CACHE_ACCESS buffer V { float v[]; };
layout(binding = 3) writeonly buffer Out { float outv[]; };
layout(binding = 4) buffer S { float score[]; };
shared float red[128];
#ifdef ATTENTION_ROPE
// The head size's bound (the backend checks it).
const uint MAX_HEAD_DIM = 256u;
layout(binding = 7) readonly buffer KIn { float kin[]; };
layout(binding = 8) readonly buffer VIn { float vin[]; };
layout(binding = 9) writeonly buffer QOut { float qout[]; };
layout(binding = 10) writeonly buffer KOut { float kout[]; };
shared float qr[MAX_HEAD_DIM], kr[MAX_HEAD_DIM];

// Rotates q head h and key head kh at position pos into qr and kr, as rope.comp would, and
// writes them out (the key and both caches' row pos only when writes_key).
void rotate_heads(uint h, uint kh, uint hd, uint pos, uint kw, uint tid, bool writes_key) {
  uint rd = pc.u[6];
  bool neox = pc.u[7] != 0u;
  uint qi = pc.o[0] / 4u + h * hd, ki = pc.o[7] / 4u + kh * hd;
  for (uint i = tid; i < hd - rd / 2u; i += 128u) {
    if (i >= rd / 2u) {
      uint d = rd + (i - rd / 2u);
      qr[d] = q[qi + d];
      kr[d] = kin[ki + d];
      continue;
    }
    float a = rope_angle(int(pos), i, rd);
    float cs = cos(a), sn = sin(a);
    uint ia = neox ? i : 2u * i, ib = neox ? i + rd / 2u : 2u * i + 1u;
    float ra = q[qi + ia], rb = q[qi + ib];
    qr[ia] = ra * cs - rb * sn;
    qr[ib] = ra * sn + rb * cs;
    ra = kin[ki + ia];
    rb = kin[ki + ib];
    kr[ia] = ra * cs - rb * sn;
    kr[ib] = ra * sn + rb * cs;
  }
  barrier();
  uint row = pos * kw + kh * hd, vi = pc.o[8] / 4u + kh * hd;
  for (uint i = tid; i < hd; i += 128u) {
    qout[pc.o[9] / 4u + h * hd + i] = qr[i];
    if (writes_key) {
      kout[pc.o[10] / 4u + kh * hd + i] = kr[i];
      k[pc.o[1] / 4u + row + i] = kr[i];
      v[pc.o[2] / 4u + row + i] = vin[vi + i];
    }
  }
}
#define Q_AT(i) qr[i]
#ifdef ATTENTION_PROJ
layout(constant_id = 0) const uint WTYPE = 0u;  // 0 f32, 1 f16, 2 bf16
layout(binding = 11) readonly buffer W { uvec4 w[]; };
layout(binding = 12) writeonly buffer Y { float y[]; };
layout(binding = 13) readonly buffer R { float res[]; };
layout(binding = 14) writeonly buffer X { float x[]; };
// Written and read by different workgroups of one dispatch.
layout(binding = 15) coherent buffer Partial { float partial[]; };
layout(binding = 16) coherent buffer Done { uint done; };
shared float ao[MAX_HEAD_DIM];  // this head's attention output
shared bool last_group;

// Weights e .. e + 7 (e % 8 == 0) of W, counted from its first element, as gemv_fused reads them.
void weights8(uint e, out vec4 a, out vec4 b) {
  uint base = pc.o[11] / 16u;
  if (WTYPE == 0u) {
    a = uintBitsToFloat(w[base + e / 4u]);
    b = uintBitsToFloat(w[base + e / 4u + 1u]);
  } else {
    uvec4 u = w[base + e / 8u];
    if (WTYPE == 1u) {
      a = vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
      b = vec4(unpackHalf2x16(u.z), unpackHalf2x16(u.w));
    } else {
      a = uintBitsToFloat(uvec4(u.x << 16, u.x & 0xFFFF0000u, u.y << 16, u.y & 0xFFFF0000u));
      b = uintBitsToFloat(uvec4(u.z << 16, u.z & 0xFFFF0000u, u.w << 16, u.w & 0xFFFF0000u));
    }
  }
}

// Head h's share of the projection, then, in the workgroup that finishes last, the sum of
// every head's share and the residual add.
void project(uint h, uint H, uint hd, uint tid) {
  uint D = pc.u[8], pb = pc.o[15] / 4u;
  for (uint r = tid; r < D; r += 128u) {
    uint e = r * H * hd + h * hd;
    float acc = 0.0;
    for (uint i = 0u; i < hd; i += 8u) {
      vec4 wa, wb;
      weights8(e + i, wa, wb);
      acc += dot(wa, vec4(ao[i], ao[i + 1u], ao[i + 2u], ao[i + 3u])) +
             dot(wb, vec4(ao[i + 4u], ao[i + 5u], ao[i + 6u], ao[i + 7u]));
    }
    partial[pb + h * D + r] = acc;
  }
  // The partials are available device-wide before the count that says they are done; the
  // last workgroup makes the others' visible before it reads them.
  memoryBarrierBuffer();
  barrier();
  if (tid == 0u) last_group = atomicAdd(done, 1u) == H - 1u;
  barrier();
  if (!last_group) return;
  memoryBarrierBuffer();
  for (uint r = tid; r < D; r += 128u) {
    float sum = 0.0;
    for (uint g = 0u; g < H; ++g) sum += partial[pb + g * D + r];
    float rv = res[pc.o[13] / 4u + r];
    y[pc.o[12] / 4u + r] = sum;
    x[pc.o[14] / 4u + r] = rv + sum;
  }
  if (tid == 0u) done = 0u;
}
#endif
#else
#define Q_AT(i) q[qb + i]
#endif

// A key's score from its dot product with q: scaled, then capped (ATTENTION_OPTIONS).
float scaled_score(float dot) {
  float s = dot * pc.f[0];
#ifdef ATTENTION_OPTIONS
  float cap = pc.f[1];
  if (cap > 0.0) s = cap * tanh_f32(s / cap);
#endif
  return s;
}

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
#else
  const uint first = 0u;
#endif
  uint qb = pc.o[0] / 4u + t * H * hd + h * hd;
  uint kw = KV * hd;
  uint kb = pc.o[1] / 4u + kh * hd, vb = pc.o[2] / 4u + kh * hd;
  uint sb = pc.o[4] / 4u + g * P;
#ifdef ATTENTION_ROPE
  rotate_heads(h, kh, hd, last, kw, tid, h % (H / KV) == 0u);
#endif
  // Keys first..last. A chain reads rows before last from the caches and row last, the last
  // of the invocation that has it, from its own rotated key and v: the same values in the
  // same order, with no per-key choice inside the loops.
#ifdef ATTENTION_ROPE
  const uint cached_end = last;
#else
  const uint cached_end = last + 1u;
#endif
  float mx = -1.0 / 0.0;
  uint j = first + tid;
  for (; j < cached_end; j += 128u) {
    float s = 0.0;
    for (uint i = 0u; i < hd; ++i) s += Q_AT(i) * k[kb + j * kw + i];
    s = scaled_score(s);
    score[sb + j] = s;
    mx = max(mx, s);
  }
#ifdef ATTENTION_ROPE
  if (j == last) {
    float s = 0.0;
    for (uint i = 0u; i < hd; ++i) s += qr[i] * kr[i];
    s = scaled_score(s);
    score[sb + j] = s;
    mx = max(mx, s);
  }
#endif
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
    if (lane < lanes && i < hd) {
      uint j = first + lane;
      for (; j < cached_end; j += lanes) acc += score[sb + j] * v[vb + j * kw + i];
#ifdef ATTENTION_ROPE
      if (j == last) acc += score[sb + j] * vin[pc.o[8] / 4u + kh * hd + i];
#endif
    }
    red[tid] = acc;
    barrier();
    if (tid < dims && i < hd) {
      float total = 0.0;
      for (uint l = 0u; l < lanes; ++l) total += red[l * dims + tid];
      float o = total * inv;
      outv[ob + i] = o;
#ifdef ATTENTION_PROJ
      ao[i] = o;
#endif
    }
    barrier();
  }
#ifdef ATTENTION_PROJ
  project(h, H, hd, tid);
#endif
}

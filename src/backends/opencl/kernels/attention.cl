// One work-group of WG items per (query row t, head h). Scores go to a scratch row of P
// floats (keys can outnumber local memory); max and sum are tree-reduced in local memory,
// and each output dimension's weighted sum over keys is split over the group's items and
// reduced too, so long contexts keep f32 accuracy. Row t is query P - T + t (causal).
// window (0: none) lets row t see keys last - window + 1 .. last; softcap (0: none) turns
// each scaled score s into softcap * tanh(s / softcap). Key head of h: h / (H / KV).
// The softmax of a row's scores s[first..last] in place, given each item's running max
// (items strided by WG): the row max and the sum of exponentials tree-reduced in `red`;
// returns 1 / sum, with s[j] = e^(s[j] - max) visible to the whole group.
inline float softmax_row(local float* red, global float* s, uint first, uint last, uint tid,
                         float mx) {
  mx = group_max(red, tid, mx);
  float sum = 0.0f;
  for (uint j = first + tid; j <= last; j += WG) {
    float e = exp(s[j] - mx);
    s[j] = e;
    sum += e;
  }
  float inv = 1.0f / group_sum(red, tid, sum);
  barrier(CLK_GLOBAL_MEM_FENCE);
  return inv;
}

kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void attention(
    global const uchar* qb, ulong qo, global const uchar* kb, ulong ko, global const uchar* vb,
    ulong vo, global uchar* ob, ulong oo, global float* score, uint T, uint P, uint H, uint KV,
    uint hd, float scale, uint window, float cap) {
  local float red[WG];
  uint g = get_group_id(0), tid = get_local_id(0);
  uint t = g / H, h = g % H, kh = h / (H / KV);
  uint last = P - T + t;
  uint first = window != 0 && last + 1 > window ? last + 1 - window : 0;
  global const float* q = CTENSOR(float, qb, qo) + (size_t)t * H * hd + (size_t)h * hd;
  uint kw = KV * hd;
  global const float* k = CTENSOR(float, kb, ko) + (size_t)kh * hd;
  global const float* v = CTENSOR(float, vb, vo) + (size_t)kh * hd;
  global float* s = score + (size_t)g * P;
  float mx = -INFINITY;
  for (uint j = first + tid; j <= last; j += WG) {
    float dot = 0.0f;
    global const float* kj = k + (size_t)j * kw;
    for (uint i = 0; i < hd; ++i) dot += q[i] * kj[i];
    dot *= scale;
    if (cap > 0.0f) dot = cap * tanh_f32(dot / cap);
    s[j] = dot;
    mx = fmax(mx, dot);
  }
  float inv = softmax_row(red, s, first, last, tid, mx);
  // Items split into `lanes` groups over keys for each of `dims` output dimensions.
  uint dims = min(hd, (uint)WG), lanes = WG / dims;
  global float* out = TENSOR(float, ob, oo) + (size_t)t * H * hd + (size_t)h * hd;
  for (uint i0 = 0; i0 < hd; i0 += dims) {
    uint i = i0 + tid % dims, lane = tid / dims;
    float acc = 0.0f;
    if (lane < lanes && i < hd)
      for (uint j = first + lane; j <= last; j += lanes) acc += s[j] * v[(size_t)j * kw + i];
    red[tid] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (tid < dims && i < hd) {
      float total = 0.0f;
      for (uint l = 0; l < lanes; ++l) total += red[l * dims + tid];
      out[i] = total * inv;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
}

#ifdef HD
// The same with the head size HD known when the program is built (a multiple of 4, at most
// 256) and q, k, v 16-byte aligned: q lives in registers, each key's dot product is HD / 4
// independent 16-byte loads, and the weighted sum over keys gives each item 4 dimensions of
// one of WG / (HD / 4) key lanes, so a decode step's long serial loops become short ones.
// q . key row, in the order of the plain kernel (and of ref?acc=f32): at large scores a
// score's rounding moves its weight by as much, and stress variants reach such scores.
#define DOT_ROW(qv, kj, dot)              \
  do {                                    \
    dot = 0.0f;                           \
    for (uint i = 0; i < HD / 4; ++i) {   \
      float4 kk = (kj)[i];                \
      dot += qv[i].x * kk.x;              \
      dot += qv[i].y * kk.y;              \
      dot += qv[i].z * kk.z;              \
      dot += qv[i].w * kk.w;              \
    }                                     \
  } while (0)

// One head's attention over keys first..last (rows of k and v kw4 float4s apart) into out.
// Key row new_row (none: UINT_MAX) is read from knew and vnew instead of the caches: the
// attention chain's own new row, which another group may still be writing to the caches.
inline void attend_vec(local float* red, local float4* part, const float4* qv,
                       global const float4* k, global const float4* v, uint kw4,
                       global float* s, uint first, uint last, uint new_row,
                       local const float4* knew, global const float4* vnew, float scale,
                       float cap, global float* out, uint tid) {
  float mx = -INFINITY;
  for (uint j = first + tid; j <= last; j += WG) {
    float dot;
    if (j == new_row)
      DOT_ROW(qv, knew, dot);
    else
      DOT_ROW(qv, k + (size_t)j * kw4, dot);
    dot *= scale;
    if (cap > 0.0f) dot = cap * tanh_f32(dot / cap);
    s[j] = dot;
    mx = fmax(mx, dot);
  }
  float inv = softmax_row(red, s, first, last, tid, mx);
  const uint dims = HD / 4, lanes = WG / dims;
  uint i = tid % dims, lane = tid / dims;
  float4 acc = (float4)(0.0f);
  if (lane < lanes)
    for (uint j = first + lane; j <= last; j += lanes) {
      global const float4* vj = j == new_row ? vnew : v + (size_t)j * kw4;
      acc = fma((float4)(s[j]), vj[i], acc);
    }
  part[tid] = acc;
  barrier(CLK_LOCAL_MEM_FENCE);
  if (tid < dims) {
    float4 total = (float4)(0.0f);
    for (uint l = 0; l < lanes; ++l) total += part[l * dims + tid];
    vstore4(total * inv, tid, out);
  }
}

kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void attention_vec(
    global const uchar* qb, ulong qo, global const uchar* kb, ulong ko, global const uchar* vb,
    ulong vo, global uchar* ob, ulong oo, global float* score, uint T, uint P, uint H, uint KV,
    uint hd_unused, float scale, uint window, float cap) {
  local float red[WG];
  local float4 part[WG];
  local float4 none[1];
  uint g = get_group_id(0), tid = get_local_id(0);
  uint t = g / H, h = g % H, kh = h / (H / KV);
  uint last = P - T + t;
  uint first = window != 0 && last + 1 > window ? last + 1 - window : 0;
  global const float4* q = (global const float4*)(CTENSOR(float, qb, qo) + (size_t)t * H * HD +
                                                  (size_t)h * HD);
  uint kw4 = KV * HD / 4;
  global const float4* k = (global const float4*)CTENSOR(float, kb, ko) + (size_t)kh * (HD / 4);
  global const float4* v = (global const float4*)CTENSOR(float, vb, vo) + (size_t)kh * (HD / 4);
  float4 qv[HD / 4];
  for (uint i = 0; i < HD / 4; ++i) qv[i] = q[i];
  attend_vec(red, part, qv, k, v, kw4, score + (size_t)g * P, first, last, UINT_MAX, none, v,
             scale, cap, TENSOR(float, ob, oo) + (size_t)t * H * HD + (size_t)h * HD, tid);
}

// A decode step's rope q, rope k, kv_store and attention as one launch, one group per head
// h (one query row at position pos = P - 1): the group rotates its q head (into qo) and its
// key head (the first group of each key head writes ko and both caches' row pos), then
// attends over the caches' rows 0..pos - 1 and its own rotated key and v for row pos. Same
// arithmetic as rope and attention_vec, so the same bits.
kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void attention_rope(
    global const uchar* qb, ulong qo, global const uchar* kb, ulong ko, global const uchar* vb,
    ulong vo, global uchar* qrb, ulong qro, global uchar* krb, ulong kro, global uchar* kcb,
    ulong kco, global uchar* vcb, ulong vco, global uchar* ob, ulong oo, global float* score,
    global const uchar* table, global const uchar* fb, ulong fo, uint P, uint H, uint KV,
    uint rd, uint neox, uint factors, float scale, uint window, float cap
#ifdef PROJ
    ,
    global const uchar* wb, ulong wo, global uchar* yb, ulong yo, global const uchar* rb,
    ulong ro, global uchar* xb, ulong xo, global float* partial, global volatile uint* done,
    uint D
#endif
) {
  local float red[WG];
  local float4 part[WG];
  local float4 qr[HD / 4], kr[HD / 4];
  uint h = get_group_id(0), tid = get_local_id(0), kh = h / (H / KV);
  bool writes_key = h % (H / KV) == 0;
  uint pos = P - 1, first = window != 0 && P > window ? P - window : 0;
  global const float* qin = CTENSOR(float, qb, qo) + (size_t)h * HD;
  global const float* kin = CTENSOR(float, kb, ko) + (size_t)kh * HD;
  global float* qout = TENSOR(float, qrb, qro) + (size_t)h * HD;
  global float* kout = TENSOR(float, krb, kro) + (size_t)kh * HD;
  local float* ql = (local float*)qr;
  local float* kl = (local float*)kr;
  for (uint i = tid; i < HD - rd / 2; i += WG) {
    if (i >= rd / 2) {
      uint d = rd + (i - rd / 2);
      ql[d] = qin[d];
      kl[d] = kin[d];
      continue;
    }
    float a = rope_angle((int)pos, i, rd, table, fb, fo, factors);
    uint ia = neox ? i : 2 * i, ib = neox ? i + rd / 2 : 2 * i + 1;
    float2 q = rope_rotate(qin[ia], qin[ib], a), k = rope_rotate(kin[ia], kin[ib], a);
    ql[ia] = q.x;
    ql[ib] = q.y;
    kl[ia] = k.x;
    kl[ib] = k.y;
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  uint kw4 = KV * HD / 4;
  global float4* kc = (global float4*)TENSOR(float, kcb, kco) + (size_t)kh * (HD / 4);
  global float4* vc = (global float4*)TENSOR(float, vcb, vco) + (size_t)kh * (HD / 4);
  global const float4* vin = (global const float4*)CTENSOR(float, vb, vo) + (size_t)kh * (HD / 4);
  for (uint i = tid; i < HD / 4; i += WG) {
    vstore4(qr[i], i, qout);
    if (writes_key) {
      vstore4(kr[i], i, kout);
      kc[(size_t)pos * kw4 + i] = kr[i];
      vc[(size_t)pos * kw4 + i] = vin[i];
    }
  }
  float4 qv[HD / 4];
  for (uint i = 0; i < HD / 4; ++i) qv[i] = qr[i];
  attend_vec(red, part, qv, kc, vc, kw4, score + (size_t)h * P, first, pos, pos, kr, vin, scale,
             cap, TENSOR(float, ob, oo) + (size_t)h * HD, tid);
#ifdef PROJ
  // The output projection y = a W^T (W: D rows of H * HD) split over heads: this group's
  // head output times its HD columns of W, for every row, into partial[h][0..D). The group
  // that finishes last (a device-wide counter) sums the H partials in head order into y and
  // x = r + y, and sets the counter back to 0 for the next launch. HD % 8 == 0, D % 4 == 0
  // and W's rows 16-byte aligned (the host checks).
  barrier(CLK_GLOBAL_MEM_FENCE);
  global const float* ah = CTENSOR(float, ob, oo) + (size_t)h * HD;
  float8 av[HD / 8];
  for (uint i = 0; i < HD / 8; ++i) av[i] = vload8(i, ah);
  global const W_T* w = CTENSOR(W_T, wb, wo) + (size_t)h * HD;
  const size_t row = (size_t)H * HD;
  global float* mine = partial + (size_t)h * D;
  for (uint r = tid; r < D; r += WG) {
    global const W_T* wr = w + r * row;
    float acc = 0.0f;
    for (uint i = 0; i < HD / 8; ++i) acc = dot8(load_w8(wr + 8 * i), av[i], acc);
    mine[r] = acc;
  }
  // Partials reach the device before the count that says so; the last group reads them
  // past its own cache (volatile).
  mem_fence(CLK_GLOBAL_MEM_FENCE);
  barrier(CLK_GLOBAL_MEM_FENCE);
  local uint last;
  if (tid == 0) last = atomic_inc(done) == H - 1;
  barrier(CLK_LOCAL_MEM_FENCE);
  if (!last) return;
  mem_fence(CLK_GLOBAL_MEM_FENCE);
  // Four rows per item (D % 4 == 0), eight heads' loads issued before their sums: volatile
  // loads are not merged or moved, so written one by one they would wait one by one.
  global volatile const float4* all = (global volatile const float4*)partial;
  global float* y = TENSOR(float, yb, yo);
  global const float* res = CTENSOR(float, rb, ro);
  global float* x = TENSOR(float, xb, xo);
  const uint D4 = D / 4;
  for (uint c = tid; c < D4; c += WG) {
    float4 sum = (float4)(0.0f);
    for (uint g0 = 0; g0 < H; g0 += 8) {
      float4 v[8];
      for (uint j = 0; j < 8; ++j)
        if (g0 + j < H) v[j] = all[(size_t)(g0 + j) * D4 + c];
      for (uint j = 0; j < 8 && g0 + j < H; ++j) sum += v[j];
    }
    float4 rv = vload4(c, res);
    vstore4(sum, c, y);
    vstore4(rv + sum, c, x);
  }
  if (tid == 0) *done = 0;
#endif
}
#endif

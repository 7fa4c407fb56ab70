// The mixture-of-experts ops.

// moe_route: one work-group per token row. Expert e is chosen when fewer than k experts
// rank above it: a larger logit, or an equal logit at a lower index (the catalog's tie
// rule, decided on the logits, not on the rounded p). With norm, p is divided by the sum
// of the chosen p instead of the sum of all.
inline uint rank_of(global const float* l, uint E, uint e) {
  float le = l[e];
  uint above = 0;
  for (uint j = 0; j < E; ++j) {
    float lj = l[j];
    if (lj > le || (lj == le && j < e)) ++above;
  }
  return above;
}

kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void moe_route(
    global const uchar* lb, ulong lo, global uchar* ob, ulong oo, uint E, uint k, uint norm) {
  local float red[WG], red2[WG];
  uint t = get_group_id(0), tid = get_local_id(0);
  global const float* l = CTENSOR(float, lb, lo) + (size_t)t * E;
  global float* route = TENSOR(float, ob, oo) + (size_t)t * E;
  float mx = -INFINITY;
  for (uint e = tid; e < E; e += WG) mx = fmax(mx, l[e]);
  mx = group_max(red, tid, mx);
  float sum = 0.0f, chosen = 0.0f;
  for (uint e = tid; e < E; e += WG) {
    float p = exp_f32(l[e] - mx);
    sum += p;
    if (rank_of(l, E, e) < k) chosen += p;
  }
  red[tid] = sum;
  red2[tid] = chosen;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint h = WG / 2; h > 0; h >>= 1) {
    if (tid < h) {
      red[tid] += red[tid + h];
      red2[tid] += red2[tid + h];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  float inv = 1.0f / (norm ? red2[0] : red[0]);
  for (uint e = tid; e < E; e += WG)
    route[e] = rank_of(l, E, e) < k ? exp_f32(l[e] - mx) * inv : 0.0f;
}

// moe_ffn's first half: act[t][e][h] = silu(gate_e[h] . x[t]) * (up_e[h] . x[t]) for every
// token t routed to expert e. One work-group per (expert e, row h, block of 4 tokens); a
// block none of whose tokens routes to e returns at once, so an unchosen expert's weights
// (which may hold anything) are never read. Rows of unchosen (t, e) are left as they were;
// moe_down never reads them.
kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void moe_gate_up(
    global const uchar* xb, ulong xo, global const uchar* rb, ulong ro, global const uchar* gb,
    ulong go, global const uchar* ub, ulong uo, global float* act, uint T, uint D, uint H,
    uint E) {
  local float red[8][WG];
  uint g = get_group_id(0), tid = get_local_id(0);
  uint eh = g % (E * H), t0 = (g / (E * H)) * 4;
  uint e = eh / H, h = eh % H, rows = min(4u, T - t0);
  global const float* route = CTENSOR(float, rb, ro) + (size_t)t0 * E + e;
  bool any = false;
  for (uint r = 0; r < rows; ++r) any = any || route[r * E] != 0.0f;
  if (!any) return;  // the same for every item of the group
  global const float* x = CTENSOR(float, xb, xo) + (size_t)t0 * D;
  global const W_T* gw = CTENSOR(W_T, gb, go) + ((size_t)e * H + h) * D;
  global const W_T* uw = CTENSOR(W_T, ub, uo) + ((size_t)e * H + h) * D;
  float ga[4] = {0.0f, 0.0f, 0.0f, 0.0f}, ua[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (uint k = tid; k < D; k += WG) {
    float gv = LOAD_W(gw, k), uv = LOAD_W(uw, k);
    for (uint r = 0; r < rows; ++r) {
      float xv = x[(size_t)r * D + k];
      ga[r] += xv * gv;
      ua[r] += xv * uv;
    }
  }
  for (uint r = 0; r < 4; ++r) {
    red[r][tid] = ga[r];
    red[4 + r][tid] = ua[r];
  }
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (tid < s)
      for (uint r = 0; r < 8; ++r) red[r][tid] += red[r][tid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (tid < rows && route[tid * E] != 0.0f) {
    float gs = red[tid][0], us = red[4 + tid][0];
    act[((size_t)(t0 + tid) * E + e) * H + h] = gs / (1.0f + exp_f32(-gs)) * us;
  }
}

// moe_ffn's second half: out[t][d] = sum over the experts e routed from t (route != 0, in
// expert order) of route[t][e] * (down_e[d] . act[t][e]). One work-group per (column d,
// block of 4 tokens); nothing of an unchosen expert (its weights, its unwritten act rows)
// reaches the sum.
kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void moe_down(
    global const float* act, global const uchar* rb, ulong ro, global const uchar* db, ulong dof,
    global uchar* ob, ulong oo, uint T, uint D, uint H, uint E) {
  local float red[4][WG];
  uint g = get_group_id(0), tid = get_local_id(0);
  uint d = g % D, t0 = (g / D) * 4;
  uint rows = min(4u, T - t0);
  global const float* route = CTENSOR(float, rb, ro) + (size_t)t0 * E;
  global const float* a = act + (size_t)t0 * E * H;
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (uint e = 0; e < E; ++e) {
    float r[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    bool any = false;
    for (uint i = 0; i < rows; ++i) {
      r[i] = route[i * E + e];
      any = any || r[i] != 0.0f;
    }
    if (!any) continue;
    global const W_T* w = CTENSOR(W_T, db, dof) + ((size_t)e * D + d) * H;
    float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (uint k = tid; k < H; k += WG) {
      float wv = LOAD_W(w, k);
      for (uint i = 0; i < rows; ++i)
        if (r[i] != 0.0f) p[i] += a[((size_t)i * E + e) * H + k] * wv;
    }
    for (uint i = 0; i < rows; ++i)
      if (r[i] != 0.0f) acc[i] += r[i] * p[i];
  }
  for (uint i = 0; i < 4; ++i) red[i][tid] = acc[i];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (tid < s)
      for (uint i = 0; i < 4; ++i) red[i][tid] += red[i][tid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (tid < rows) TENSOR(float, ob, oo)[(size_t)(t0 + tid) * D + d] = red[tid][0];
}

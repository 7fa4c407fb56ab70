// out[t][n] = dot(x[t], w[n]). One work-group of WG items per (weight row n, block of 4
// token rows): each weight element is read once per block; partial dot products are
// strided over K and tree-reduced in local memory, f32 throughout. Group g covers
// n = g % N, rows 4 * (g / N) ...
kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void matmul(
    global const uchar* xb, ulong xo, global const uchar* wb, ulong wo, global uchar* ob,
    ulong oo, uint T, uint K, uint N) {
  local float red[4][WG];
  uint g = get_group_id(0), tid = get_local_id(0);
  uint n = g % N, t0 = (g / N) * 4;
  uint rows = min(4u, T - t0);
  global const float* x = CTENSOR(float, xb, xo) + (size_t)t0 * K;
  global const W_T* w = CTENSOR(W_T, wb, wo) + (size_t)n * K;
  float acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;
  if (rows == 4) {
    for (uint k = tid; k < K; k += WG) {
      float wv = LOAD_W(w, k);
      acc0 += x[k] * wv;
      acc1 += x[K + k] * wv;
      acc2 += x[2 * K + k] * wv;
      acc3 += x[3 * K + k] * wv;
    }
  } else {
    for (uint k = tid; k < K; k += WG) {
      float wv = LOAD_W(w, k);
      acc0 += x[k] * wv;
      if (rows > 1) acc1 += x[K + k] * wv;
      if (rows > 2) acc2 += x[2 * K + k] * wv;
    }
  }
  store_rows4(red, tid, acc0, acc1, acc2, acc3, rows, TENSOR(float, ob, oo) + (size_t)t0 * N + n,
              N);
}

// Decode (one token row): out[n] = dot(x, w[n]), one team of TEAM items per weight row, WG /
// TEAM rows per group. Each item reads 8 weights at a time as one 16-byte load, so the host
// uses this only when K % 8 == 0 and the weights start 16-byte aligned; products are fused
// multiply-adds in f32, the team's partial sums tree-reduced in local memory.
#define TEAM (WG < 32 ? WG : 32)

// acc = dot(w[0..K), x[0..K)) over a team's lane: four 16-byte loads in flight per item
// before their products (one at a time leaves too few bytes in flight per multiprocessor to
// reach the memory's bandwidth). x may be global or local.
#define ROW_DOT(acc, w, x, K, lane)                                                  \
  {                                                                                  \
    float acc2_ = 0.0f;                                                              \
    uint k_ = (lane) * 8;                                                            \
    for (; k_ + 3 * TEAM * 8 < (K); k_ += 4 * TEAM * 8) {                            \
      float8 w0_ = load_w8((w) + k_), w1_ = load_w8((w) + k_ + TEAM * 8);            \
      float8 w2_ = load_w8((w) + k_ + 2 * TEAM * 8), w3_ = load_w8((w) + k_ + 3 * TEAM * 8); \
      acc = dot8(w0_, vload8(0, (x) + k_), acc);                                     \
      acc2_ = dot8(w1_, vload8(0, (x) + k_ + TEAM * 8), acc2_);                      \
      acc = dot8(w2_, vload8(0, (x) + k_ + 2 * TEAM * 8), acc);                      \
      acc2_ = dot8(w3_, vload8(0, (x) + k_ + 3 * TEAM * 8), acc2_);                  \
    }                                                                                \
    /* The last 1-3 chunks of this lane's share, loaded together too. */                    \
    if (k_ + 2 * TEAM * 8 < (K)) {                                                   \
      float8 w0_ = load_w8((w) + k_), w1_ = load_w8((w) + k_ + TEAM * 8);            \
      float8 w2_ = load_w8((w) + k_ + 2 * TEAM * 8);                                 \
      acc = dot8(w0_, vload8(0, (x) + k_), acc);                                     \
      acc2_ = dot8(w1_, vload8(0, (x) + k_ + TEAM * 8), acc2_);                      \
      acc = dot8(w2_, vload8(0, (x) + k_ + 2 * TEAM * 8), acc);                      \
    } else if (k_ + TEAM * 8 < (K)) {                                                \
      float8 w0_ = load_w8((w) + k_), w1_ = load_w8((w) + k_ + TEAM * 8);            \
      acc = dot8(w0_, vload8(0, (x) + k_), acc);                                     \
      acc2_ = dot8(w1_, vload8(0, (x) + k_ + TEAM * 8), acc2_);                      \
    } else if (k_ < (K)) {                                                           \
      acc = dot8(load_w8((w) + k_), vload8(0, (x) + k_), acc);                       \
    }                                                                                \
    acc += acc2_;                                                                    \
  }

// The sum of v over the items of this item's team (lane 0 of the team gets the whole sum;
// every item of the group must call it). red: the group's WG floats.
inline float team_sum(local float* red, uint tid, uint lane, float v) {
  red[tid] = v;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = TEAM / 2; s > 0; s >>= 1) {
    if (lane < s) red[tid] += red[tid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  v = red[tid];
  barrier(CLK_LOCAL_MEM_FENCE);
  return v;
}

kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void gemv(
    global const uchar* xb, ulong xo, global const uchar* wb, ulong wo, global uchar* ob,
    ulong oo, uint K, uint N) {
  local float red[WG];
  uint tid = get_local_id(0), lane = tid % TEAM;
  uint n = get_group_id(0) * (WG / TEAM) + tid / TEAM;
  float acc = 0.0f;
  if (n < N) {
    global const float* x = CTENSOR(float, xb, xo);
    global const W_T* w = CTENSOR(W_T, wb, wo) + (size_t)n * K;
    ROW_DOT(acc, w, x, K, lane);
  }
  acc = team_sum(red, tid, lane, acc);
  if (lane == 0 && n < N) TENSOR(float, ob, oo)[n] = acc;
}

// Decode matmuls fused with their neighbours (the backend holds calls back to find them):
//   mode 0: up to three weight matrices on the same input row x, their rows numbered one
//           after the other (q, k, v);
//   mode 1: two of the same shape whose outputs feed swiglu: o2 = silu(o0) * o1, with o0 and
//           o1 written too (gate, up);
//   mode 2: one whose output is added to r: o2 = r + o0 (a residual).
// NORM_K (defined): x is first rmsnorm(x, nw, eps) over its NORM_K values, the norm weight
// f32, computed by every group exactly as the rmsnorm kernel does (same sums in the same
// order) into local memory, and written to xn by group 0 as the held rmsnorm call would.
// Offsets of x, nw, xn, w0, o0, w1, o1, w2, o2, r in `off`; p = (K, N0, N1, N2, mode).
kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void gemv_fused(
    global const uchar* xb, global const uchar* nwb, global uchar* xnb, global const uchar* w0b,
    global uchar* o0b, global const uchar* w1b, global uchar* o1b, global const uchar* w2b,
    global uchar* o2b, global const uchar* rb, ulong16 off, uint8 p, float eps) {
  local float red[WG];
  const uint K = p.s0, N0 = p.s1, N1 = p.s2, N2 = p.s3, mode = p.s4;
  uint tid = get_local_id(0), lane = tid % TEAM;
#ifdef NORM_K
  local float xs[NORM_K];
  {
    global const float* xg = CTENSOR(float, xb, off.s0);
    float ss = 0.0f;
    for (uint d = tid; d < K; d += WG) ss += xg[d] * xg[d];
    float inv = 1.0f / sqrt(group_sum(red, tid, ss) / (float)K + eps);
    global const float* nw = CTENSOR(float, nwb, off.s1);
    global float* xn = TENSOR(float, xnb, off.s2);
    for (uint d = tid; d < K; d += WG) {
      float v = xg[d] * inv * nw[d];
      xs[d] = v;
      if (get_group_id(0) == 0) xn[d] = v;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
#define X_PTR local const float*
#define X_AT xs
#else
#define X_PTR global const float*
#define X_AT CTENSOR(float, xb, off.s0)
#endif
  uint row = get_group_id(0) * (WG / TEAM) + tid / TEAM;
  const uint rows = mode == 0 ? N0 + N1 + N2 : N0;
  // This team's matrix (mode 0) and the row within it.
  uint m = 0, n = row;
  if (mode == 0 && n >= N0) {
    n -= N0;
    m = 1;
    if (n >= N1) n -= N1, m = 2;
  }
  global const W_T* w = CTENSOR(W_T, m == 0 ? w0b : m == 1 ? w1b : w2b,
                                m == 0 ? off.s3 : m == 1 ? off.s5 : off.s7) + (size_t)n * K;
  global const W_T* wu = CTENSOR(W_T, w1b, off.s5) + (size_t)n * K;
  X_PTR x = X_AT;
  float acc = 0.0f, up = 0.0f;
  if (row < rows) {
    if (mode == 1) {
      // Two chunks of each matrix in flight, as ROW_DOT keeps four of one.
      uint k = lane * 8;
      for (; k + TEAM * 8 < K; k += 2 * TEAM * 8) {
        float8 g0 = load_w8(w + k), g1 = load_w8(w + k + TEAM * 8);
        float8 u0 = load_w8(wu + k), u1 = load_w8(wu + k + TEAM * 8);
        float8 x0 = vload8(0, x + k), x1 = vload8(0, x + k + TEAM * 8);
        acc = dot8(g1, x1, dot8(g0, x0, acc));
        up = dot8(u1, x1, dot8(u0, x0, up));
      }
      if (k < K) {
        float8 xv = vload8(0, x + k);
        acc = dot8(load_w8(w + k), xv, acc);
        up = dot8(load_w8(wu + k), xv, up);
      }
    } else {
      ROW_DOT(acc, w, x, K, lane);
    }
  }
  acc = team_sum(red, tid, lane, acc);
  if (mode == 1) up = team_sum(red, tid, lane, up);
  if (lane != 0 || row >= rows) return;
  global float* o = TENSOR(float, m == 0 ? o0b : m == 1 ? o1b : o2b,
                           m == 0 ? off.s4 : m == 1 ? off.s6 : off.s8);
  o[n] = acc;
  if (mode == 1) {
    TENSOR(float, o1b, off.s6)[n] = up;
    TENSOR(float, o2b, off.s8)[n] = acc / (1.0f + exp(-acc)) * up;
  } else if (mode == 2) {
    TENSOR(float, o2b, off.s8)[n] = CTENSOR(float, rb, off.s9)[n] + acc;
  }
}
#undef X_PTR
#undef X_AT

// Prefill: one group of WG items per block of RB token rows x 4 weight rows, each item
// RB x 4 partial dot products strided over K, 4 consecutive K at a time (vector loads),
// reduced in local memory: RB + 4 loads per 16 RB products where `matmul` needs 5 per 4.
// Groups are numbered weight block first: g % ceil(N / 4), token block g / ceil(N / 4).
#if WTYPE == 0
#define LOAD_W4(p, i) vload4(0, (p) + (i))
#elif WTYPE == 1
#define LOAD_W4(p, i) vload_half4(0, (p) + (i))
#else
#define LOAD_W4(p, i) as_float4(convert_uint4(vload4(0, (p) + (i))) << 16)
#endif
#ifndef RB
#define RB 4
#endif
kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void matmul_blocked(
    global const uchar* xb, ulong xo, global const uchar* wb, ulong wo, global uchar* ob,
    ulong oo, uint T, uint K, uint N) {
  local float red[RB * 4][WG];
  uint tid = get_local_id(0), nb = (N + 3) / 4, g = get_group_id(0);
  uint n0 = (g % nb) * 4, t0 = (g / nb) * RB;
  uint nr = min(4u, N - n0), tr = min((uint)RB, T - t0);
  global const float* x = CTENSOR(float, xb, xo) + (size_t)t0 * K;
  global const W_T* w = CTENSOR(W_T, wb, wo) + (size_t)n0 * K;
  // Rows past the end read row 0 again (their sums are never stored).
  size_t xr[RB], wr[4];
  for (uint i = 0; i < RB; ++i) xr[i] = (size_t)(i < tr ? i : 0) * K;
  for (uint j = 0; j < 4; ++j) wr[j] = (size_t)(j < nr ? j : 0) * K;
  float acc[RB][4];
  for (uint i = 0; i < RB; ++i)
    for (uint j = 0; j < 4; ++j) acc[i][j] = 0.0f;
  uint k = tid * 4;
  for (; k + 3 < K; k += 4 * WG) {
    float4 b[4];
    for (uint j = 0; j < 4; ++j) b[j] = LOAD_W4(w, wr[j] + k);
    for (uint i = 0; i < RB; ++i) {
      float4 a = vload4(0, x + xr[i] + k);
      for (uint j = 0; j < 4; ++j) {
        float s = acc[i][j];
        s = fma(a.x, b[j].x, s);
        s = fma(a.y, b[j].y, s);
        s = fma(a.z, b[j].z, s);
        acc[i][j] = fma(a.w, b[j].w, s);
      }
    }
  }
  // The last K % 4 (one item each), when K is not a multiple of 4.
  for (k = (K / 4) * 4 + tid; k < K; k += WG)
    for (uint i = 0; i < RB; ++i)
      for (uint j = 0; j < 4; ++j) acc[i][j] = fma(x[xr[i] + k], LOAD_W(w, wr[j] + k), acc[i][j]);
  for (uint i = 0; i < RB; ++i)
    for (uint j = 0; j < 4; ++j) red[i * 4 + j][tid] = acc[i][j];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (tid < s)
      for (uint r = 0; r < RB * 4; ++r) red[r][tid] += red[r][tid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  for (uint e = tid; e < RB * 4; e += WG) {
    uint i = e / 4, j = e % 4;
    if (i < tr && j < nr) TENSOR(float, ob, oo)[(size_t)(t0 + i) * N + n0 + j] = red[e][0];
  }
}

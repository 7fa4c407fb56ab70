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
  red[0][tid] = acc0;
  red[1][tid] = acc1;
  red[2][tid] = acc2;
  red[3][tid] = acc3;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (tid < s)
      for (uint r = 0; r < 4; ++r) red[r][tid] += red[r][tid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (tid < rows) TENSOR(float, ob, oo)[(size_t)(t0 + tid) * N + n] = red[tid][0];
}

// out[t][n] = dot(x[t], w[n]) with w of the block type QTYPE (decoders in common.cl). As
// matmul.cl: one work-group of WG items per (weight row n, block of 4 token rows), group g
// covering n = g % N and rows 4 * (g / N) ...; each item takes the 16-element units tid,
// tid + WG, ... of the row, dequantized once for the 4 token rows; partial dot products are
// tree-reduced in local memory, f32 throughout. row_bytes: the bytes of one weight row.
kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void matmul_quant(
    global const uchar* xb, ulong xo, global const uchar* wb, ulong wo, global uchar* ob,
    ulong oo, uint T, uint K, uint N, uint row_bytes) {
  local float red[4][WG];
  uint g = get_group_id(0), tid = get_local_id(0);
  uint n = g % N, t0 = (g / N) * 4;
  uint rows = min(4u, T - t0);
  global const float* x = CTENSOR(float, xb, xo) + (size_t)t0 * K;
  global const uchar* w = wb + wo + (size_t)n * row_bytes;
  float acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;
  for (uint u = tid; u < K / 16u; u += WG) {
    float v[16];
    dequant_unit(w, u, v);
    global const float* xu = x + 16u * u;
    for (uint l = 0; l < 16u; ++l) {
      acc0 += xu[l] * v[l];
      if (rows > 1) acc1 += xu[K + l] * v[l];
      if (rows > 2) acc2 += xu[2 * K + l] * v[l];
      if (rows > 3) acc3 += xu[3 * K + l] * v[l];
    }
  }
  store_rows4(red, tid, acc0, acc1, acc2, acc3, rows, TENSOR(float, ob, oo) + (size_t)t0 * N + n,
              N);
}

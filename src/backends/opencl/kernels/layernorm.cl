// One work-group per row, tree-reduced sums in local memory. The mean is m0 + lo: m0 the
// f32 mean, lo the mean of the deviations from it (the corrected two-pass algorithm): for a
// row at 1000 +- 1, m0 alone is off by a share of an ulp of 1000 in every output, while
// x - m0 is exact there and lo carries the rest. The variance is that of the deviations,
// never E[x^2] - E[x]^2.
kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void layernorm(
    global const uchar* xb, ulong xo, global const uchar* wb, ulong wo, global uchar* ob,
    ulong oo, uint N, float eps) {
  local float red[WG], red2[WG];
  uint t = get_group_id(0), tid = get_local_id(0);
  global const float* x = CTENSOR(float, xb, xo) + (size_t)t * N;
  global const float* w = CTENSOR(float, wb, wo);
  global float* out = TENSOR(float, ob, oo) + (size_t)t * N;
  float s = 0.0f;
  for (uint i = tid; i < N; i += WG) s += x[i];
  float m0 = group_sum(red, tid, s) / (float)N;
  float s1 = 0.0f, s2 = 0.0f;
  for (uint i = tid; i < N; i += WG) {
    float d = x[i] - m0;
    s1 += d;
    s2 += d * d;
  }
  red[tid] = s1;
  red2[tid] = s2;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint h = WG / 2; h > 0; h >>= 1) {
    if (tid < h) {
      red[tid] += red[tid + h];
      red2[tid] += red2[tid + h];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  float lo = red[0] / (float)N;
  float var = fmax(0.0f, red2[0] / (float)N - lo * lo);
  float inv = 1.0f / sqrt(var + eps);
  for (uint i = tid; i < N; i += WG) out[i] = ((x[i] - m0) - lo) * inv * w[i];
}

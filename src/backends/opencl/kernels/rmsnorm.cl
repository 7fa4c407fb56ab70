// One work-group of WG items per row: strided partial sums of squares, then a tree
// reduction in local memory (pairwise, so long rows keep their accuracy).
kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void rmsnorm(
    global const uchar* xb, ulong xo, global const uchar* wb, ulong wo, global uchar* ob,
    ulong oo, uint D, float eps) {
  local float red[WG];
  uint t = get_group_id(0), tid = get_local_id(0);
  global const float* x = CTENSOR(float, xb, xo) + (size_t)t * D;
  global const W_T* w = CTENSOR(W_T, wb, wo);
  global float* out = TENSOR(float, ob, oo) + (size_t)t * D;
  float ss = 0.0f;
  for (uint d = tid; d < D; d += WG) ss += x[d] * x[d];
  float inv = 1.0f / sqrt(group_sum(red, tid, ss) / (float)D + eps);
  for (uint d = tid; d < D; d += WG) out[d] = x[d] * inv * LOAD_W(w, d);
}

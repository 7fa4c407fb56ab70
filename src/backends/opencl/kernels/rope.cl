// One work-item per (row, head, i), i < hd - rd/2: i < rd/2 rotates pair i, the rest copy
// one unrotated element. Whole pairs per work-item keep in-place calls (out == x) safe.
// freq comes from a host-made table (rd/2 doubles, then rd/2 floats); with ROPE_F64 (a
// device with cl_khr_fp64) the angle pos * freq is formed and reduced modulo 2 pi in f64,
// so large positions keep their accuracy. With factors != 0, freq is divided by the
// optional freq_factors[i] first (in f64 where the angle is). n = T * H * (hd - rd/2).
// Items from n1 on rotate a second tensor x2 (H2 heads) into o2 with the same positions and
// frequencies: q and k in one launch.
#ifdef ROPE_F64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
kernel void rope(global const uchar* xb, ulong xo, global const uchar* pb, ulong po,
                 global uchar* ob, ulong oo, global const uchar* table, global const uchar* fb,
                 ulong fo, uint n, uint H, uint hd, uint rd, uint neox, uint factors,
                 global const uchar* x2b, ulong x2o, global uchar* o2b, ulong o2o, uint n1,
                 uint H2) {
  uint idx = get_global_id(0);
  if (idx >= n) return;
  if (idx >= n1) {
    idx -= n1;
    H = H2;
    xb = x2b;
    xo = x2o;
    ob = o2b;
    oo = o2o;
  }
  uint per_head = hd - rd / 2;
  uint i = idx % per_head, th = idx / per_head, t = th / H, h = th % H;
  size_t base = (size_t)t * H * hd + (size_t)h * hd;
  global const float* x = CTENSOR(float, xb, xo) + base;
  global float* out = TENSOR(float, ob, oo) + base;
  if (i >= rd / 2) {
    uint d = rd + (i - rd / 2);
    out[d] = x[d];
    return;
  }
  int p = CTENSOR(int, pb, po)[t];
#ifdef ROPE_F64
  double freq = ((global const double*)table)[i];
  if (factors) freq /= (double)CTENSOR(float, fb, fo)[i];
  double theta = (double)p * freq;
  const double two_pi = 6.283185307179586476925286766559;
  double r = theta - two_pi * floor(theta / two_pi + 0.5);
  float a = (float)r;
#else
  float freq = ((global const float*)(table + (size_t)(rd / 2) * 8))[i];
  if (factors) freq /= CTENSOR(float, fb, fo)[i];
  float theta = (float)p * freq;
  const float two_pi = 6.28318530717958647692f;
  float a = theta - two_pi * floor(theta / two_pi + 0.5f);
#endif
  float cs = cos(a), sn = sin(a);
  uint ia = neox ? i : 2 * i, ib = neox ? i + rd / 2 : 2 * i + 1;
  float ra = x[ia], rb = x[ib];
  out[ia] = ra * cs - rb * sn;
  out[ib] = ra * sn + rb * cs;
}

// One work-item per (row, head, i), i < hd - rd/2: i < rd/2 rotates pair i by
// rope_angle() (common.cl), the rest copy one unrotated element. Whole pairs per work-item
// keep in-place calls (out == x) safe. n = T * H * (hd - rd/2).
// Items from n1 on rotate a second tensor x2 (H2 heads) into o2 with the same positions and
// frequencies: q and k in one launch.
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
  float a = rope_angle(CTENSOR(int, pb, po)[t], i, rd, table, fb, fo, factors);
  uint ia = neox ? i : 2 * i, ib = neox ? i + rd / 2 : 2 * i + 1;
  float2 r = rope_rotate(x[ia], x[ib], a);  // both read before either is written (in place)
  out[ia] = r.x;
  out[ib] = r.y;
}

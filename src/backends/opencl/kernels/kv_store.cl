// Rows pos..pos+T-1 of both caches receive k and v (pos was range-checked on the host).
// n = T * C.
kernel void kv_store(global uchar* kcb, ulong kco, global uchar* vcb, ulong vco,
                     global const uchar* kb, ulong ko, global const uchar* vb, ulong vo,
                     global const uchar* pb, ulong po, uint n, uint C) {
  uint i = get_global_id(0);
  if (i >= n) return;
  size_t dst = (size_t)(uint)CTENSOR(int, pb, po)[0] * C + i;
  TENSOR(float, kcb, kco)[dst] = CTENSOR(float, kb, ko)[i];
  TENSOR(float, vcb, vco)[dst] = CTENSOR(float, vb, vo)[i];
}

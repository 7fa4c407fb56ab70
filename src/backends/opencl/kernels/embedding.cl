// out[t][d] = table[ids[t]][d]; ids were range-checked on the host. n = T * D.
kernel void embedding(global const uchar* tb, ulong to, global const uchar* ib, ulong io,
                      global uchar* ob, ulong oo, uint n, uint D) {
  uint i = get_global_id(0);
  if (i >= n) return;
  global const W_T* table = CTENSOR(W_T, tb, to);
  uint t = i / D, d = i % D;
  uint id = (uint)CTENSOR(int, ib, io)[t];
  TENSOR(float, ob, oo)[i] = LOAD_W(table, id * D + d);
}

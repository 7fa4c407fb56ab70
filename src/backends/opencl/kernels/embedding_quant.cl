// out[t] = the dequantized row ids[t] of a table of the block type QTYPE (decoders in
// common.cl), bit for bit as core's dequantize_row; ids were range-checked on the host. One
// work-item per 16-element unit of an output row: units = T * D / 16. row_bytes: the bytes of
// one table row.
kernel void embedding_quant(global const uchar* tb, ulong to, global const uchar* ib, ulong io,
                            global uchar* ob, ulong oo, uint units, uint D, uint row_bytes) {
  uint i = get_global_id(0);
  if (i >= units) return;
  uint per_row = D / 16u, t = i / per_row, u = i % per_row;
  uint id = (uint)CTENSOR(int, ib, io)[t];
  float v[16];
  dequant_unit(tb + to + (size_t)id * row_bytes, u, v);
  global float* out = TENSOR(float, ob, oo) + (size_t)t * D + 16u * u;
  for (uint l = 0; l < 16u; ++l) out[l] = v[l];
}

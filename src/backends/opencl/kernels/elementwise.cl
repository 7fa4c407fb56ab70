// The element-wise ops, one work-item per element; n = number of elements.
#define ELEMENTWISE_PROLOGUE          \
  uint i = get_global_id(0);          \
  if (i >= n) return;                 \
  global const float* a = CTENSOR(float, ab, ao);

// swiglu: out = a * sigmoid(a) * b.
kernel void swiglu(global const uchar* ab, ulong ao, global const uchar* bb, ulong bo,
                   global uchar* ob, ulong oo, uint n) {
  ELEMENTWISE_PROLOGUE
  float av = a[i];
  TENSOR(float, ob, oo)[i] = av / (1.0f + exp(-av)) * CTENSOR(float, bb, bo)[i];
}

kernel void add(global const uchar* ab, ulong ao, global const uchar* bb, ulong bo,
                global uchar* ob, ulong oo, uint n) {
  ELEMENTWISE_PROLOGUE
  TENSOR(float, ob, oo)[i] = a[i] + CTENSOR(float, bb, bo)[i];
}

kernel void mul(global const uchar* ab, ulong ao, global const uchar* bb, ulong bo,
                global uchar* ob, ulong oo, uint n) {
  ELEMENTWISE_PROLOGUE
  TENSOR(float, ob, oo)[i] = a[i] * CTENSOR(float, bb, bo)[i];
}

// bias: b broadcast over the rows of N.
kernel void bias(global const uchar* ab, ulong ao, global const uchar* bb, ulong bo,
                 global uchar* ob, ulong oo, uint n, uint N) {
  ELEMENTWISE_PROLOGUE
  TENSOR(float, ob, oo)[i] = a[i] + CTENSOR(float, bb, bo)[i % N];
}

// scale: s rounded to f32, which the catalog allows (one more rounding).
kernel void scale(global const uchar* ab, ulong ao, global uchar* ob, ulong oo, uint n,
                  float s) {
  ELEMENTWISE_PROLOGUE
  TENSOR(float, ob, oo)[i] = a[i] * s;
}

// softcap: out = cap * tanh(x / cap), cap > 0.
kernel void softcap(global const uchar* ab, ulong ao, global uchar* ob, ulong oo, uint n,
                    float cap) {
  ELEMENTWISE_PROLOGUE
  TENSOR(float, ob, oo)[i] = cap * tanh_f32(a[i] / cap);
}

// sigmoid_gate: out[t, j] = x[t, j] * sigmoid(g[t]); N = row length.
kernel void sigmoid_gate(global const uchar* ab, ulong ao, global const uchar* gb, ulong go,
                         global uchar* ob, ulong oo, uint n, uint N) {
  ELEMENTWISE_PROLOGUE
  TENSOR(float, ob, oo)[i] = a[i] * sigmoid_f32(CTENSOR(float, gb, go)[i / N]);
}

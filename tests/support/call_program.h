// Call sequences for backend tests: numbered buffers that start as host tensors' bytes, and
// steps that are calls on views of them, host writes into them or host reads of them. A
// program runs on any backend without reading between calls unless it says so (as a model
// step does), so a backend that holds calls back to fuse them meets it as it would a model;
// its results are then compared with another backend's, buffer by buffer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"

namespace tapml::testing {

struct View {
  int buffer;
  size_t offset;  // bytes
  DType dtype;
  Shape shape;
};
struct Step {
  Op op = Op::Add;
  Attrs attrs;
  std::vector<View> in, out;
  int write_buffer = -1;  // >= 0: a host write of `data` into this buffer instead of a call
  int read_buffer = -1;   // >= 0: a host read of this buffer instead of a call
  std::vector<std::byte> data;
};
struct Program {
  std::vector<std::vector<std::byte> > buffers;
  std::vector<Step> steps;

  // A buffer of t's bytes after extra_front zero bytes; a buffer of zeros.
  int add(const Tensor& t, size_t extra_front = 0);
  int zeros(size_t bytes);
  void call(Op op, Attrs a, std::vector<View> in, std::vector<View> out);
  void write(int buffer, const Tensor& t);
  void read(int buffer);
};

// Runs p on b: what the host read between calls, then every buffer's final bytes.
std::vector<std::vector<std::byte> > run(Backend& b, const Program& p);

// The largest |a - e| / max(1, |e|) over the f32 values of a buffer (infinite where one is a
// NaN and the other not).
double worst_error(const std::vector<std::byte>& got, const std::vector<std::byte>& want);

// Buffers for a program: weights of dtype wtype `front` bytes into their buffer (16 keeps
// the 16-byte loads of GPU gemv paths; 4 takes them off), random f32 rows, zeroed outputs,
// and a one-value position.
struct Maker {
  std::mt19937& gen;
  DType wtype;
  Program& p;
  size_t front = 16;
  View weight(int64_t n, int64_t k);
  View f32(Shape s, float sd = 1.0f);
  View out(Shape s);
  View pos(int32_t at, int64_t rows = 1);  // rows positions at, at + 1, ...
};

Attrs rope_attrs(int heads, int head_dim = 16);
// attention's attributes with the usual scale, 1/sqrt(head_dim).
Attrs attention_attrs(int64_t heads, int64_t kv_heads, int64_t head_dim);

// One layer's decode calls: width D (hd-wide heads: D / hd for q, 2 or 1 for k and v),
// feed-forward width F, weights `front` bytes into their buffers. in_place: the residual
// adds write into the residual and swiglu into the gate; matmul_first: the second residual
// add takes the matmul's output as its first operand. rows > 1: a prefill of that many
// tokens instead (positions 5.., attention causal over the cache).
struct BlockShape {
  int64_t D, F;
  int hd;
  size_t front = 16;
  bool in_place = false;
  bool matmul_first = false;
  int64_t rows = 1;
};
Program decode_block_of(std::mt19937& gen, DType wt, const BlockShape& s);

// Calls next to the fusable patterns that must not fuse (inputs of width D, N outputs per
// matmul, weights `front` bytes into their buffers): a norm then a matmul of another input,
// four matmuls of one input, swiglu with its operands swapped, and an add of a matmul's
// output and that matmul's input; between them the patterns themselves. Returns the
// program and, for callers that add steps, some of its views (x, y: rows of D; a, z: rows of
// N, written by its calls; w1..w4: the N x D weights).
struct NearMisses {
  Program p;
  View x, y, w1, w2, w3, w4, a, z;
};
NearMisses near_misses_of(std::mt19937& gen, DType wt, int64_t D, int64_t N, size_t front);

}  // namespace tapml::testing

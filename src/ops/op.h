// The operator catalog: what each op means, what it takes and gives, and which outputs are
// written in place. Backends compute ops; this file is the one place that says what they
// must compute. Shapes are outermost first; "T" is the number of token rows in a call.
//
//   embedding   (table [V, D] f32|f16|bf16, ids [T] i32)            -> out [T, D] f32
//               out[t] = table[ids[t]]; an id outside [0, V) is an error.
//   rmsnorm     (x [T, D] f32, weight [D] f32|f16|bf16)  attrs eps   -> out [T, D] f32
//               out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight
//   matmul      (x [T, K] f32, w [N, K] f32|f16|bf16)               -> out [T, N] f32
//               out[t][n] = sum_k x[t][k] * w[n][k]
//   rope        (x [T, H*hd] f32, pos [T] i32)
//               attrs n_heads, head_dim, rope_dim, base, pairing     -> out [T, H*hd] f32
//               Per head, rotate pairs of the first rope_dim dimensions by the angle
//               pos * base^(-2i/rope_dim), i = pair index. pairing 0 (adjacent): pairs
//               (2i, 2i+1). pairing 1 (neox): pairs (i, i + rope_dim/2). Others copied.
//   kv_store    (k_cache [S, C] f32, v_cache [S, C] f32, k [T, C] f32, v [T, C] f32,
//                pos [1] i32)                                         -> k_cache, v_cache
//               IN PLACE: rows pos..pos+T-1 of each cache receive k / v. pos+T <= S.
//   attention   (q [T, H*hd] f32, k [P, KV*hd] f32, v [P, KV*hd] f32)
//               attrs n_heads, n_kv_heads, head_dim, scale            -> out [T, H*hd] f32
//               k/v are the used prefix of the cache: the T query rows sit at absolute
//               positions P-T .. P-1, and row t attends to keys 0 .. P-T+t (causal).
//               Query head h reads KV head h / (H / KV) (grouped-query attention).
//               out = softmax(q k^T * scale) v per head.
//   swiglu      (gate [T, F] f32, up [T, F] f32)                      -> out [T, F] f32
//               out = gate * sigmoid(gate) * up
//   add         (a [T, D] f32, b [T, D] f32)                          -> out [T, D] f32
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"

namespace tapml {

// Named numeric attributes of a call, in a fixed order per op.
class Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<std::string, double>> items) : items_(items) {}
  void set(const std::string& name, double value);
  bool has(std::string_view name) const;
  // Throw Error if absent.
  double get(std::string_view name) const;
  int64_t get_int(std::string_view name) const;
  const std::vector<std::pair<std::string, double>>& items() const { return items_; }
  bool operator==(const Attrs& o) const { return items_ == o.items_; }

 private:
  std::vector<std::pair<std::string, double>> items_;
};

struct TensorType {
  DType dtype = DType::F32;
  Shape shape;
  bool operator==(const TensorType& o) const { return dtype == o.dtype && shape == o.shape; }
};

struct OpDef {
  std::string name;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::vector<std::string> attrs;
  // For each output: the index of the input it overwrites, or -1 for a fresh tensor.
  std::vector<int> inplace_of;
  // Checks inputs and attributes; returns the output types or throws Error naming the
  // problem ("matmul: x [3, 64] and w [48, 32] disagree on K").
  std::vector<TensorType> (*infer)(std::span<const TensorType> inputs, const Attrs& attrs);
  // The length of the reductions one output element depends on (for tolerance scaling).
  int64_t (*reduction_length)(std::span<const TensorType> inputs, const Attrs& attrs);
};

// Throws Error listing the known ops for an unknown name.
const OpDef& op_def(std::string_view name);
const std::vector<OpDef>& all_ops();

}  // namespace tapml

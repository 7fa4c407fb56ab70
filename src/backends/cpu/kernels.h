// The cpu backend's SIMD kernels (private to backends/cpu). Each function is compiled for
// several instruction sets with Highway and picks the best one the running CPU has. They
// work on plain host pointers and ranges; threading and validation are the caller's job.
// All reductions accumulate in f32 with several independent accumulators.
#pragma once
#include <cstdint>
#include <vector>

#include "core/quant.h"

namespace tapml::cpu {

// Weight element types, matching the catalog's float dtypes.
enum class WeightType : int { F32, F16, BF16 };

// out[t][n] = sum_k x[t][k] * w[n][k] for all t < T and n in [n_begin, n_end).
// With xt set (many rows, T >= kManyRows), the kernel reads x transposed instead.
struct MatmulArgs {
  const float* x;  // [T, K]
  const void* w;   // [N, K] of `wtype`
  WeightType wtype;
  float* out;  // [T, N]
  int64_t T, K, N;
  // Panels of ldxt tokens, each [K, ldxt]: x[t][k] at xt[(t / ldxt) * K * ldxt + k * ldxt +
  // t % ldxt], 0 for t >= T (see transpose_rows).
  const float* xt = nullptr;
  int64_t ldxt = 0;  // transposed_width(T)
};
void matmul_range(const MatmulArgs& a, int64_t n_begin, int64_t n_end);

// Many-row matmuls (prefill) run outer-product tiles over x transposed: from kManyRows rows,
// the caller fills xt with transpose_rows (split over K as it likes) and splits the output
// features in units of kManyRowsUnit (whole tiles; any split gives the same bits, though not
// the same as the dot-product tiles', which sum in another order).
constexpr int64_t kManyRows = 32;
constexpr int64_t kManyRowsUnit = 12;
constexpr int64_t kXtAlign = 16;  // a panel's rows are padded to a multiple of this
// x transposed is kept in panels of at most kXtPanel tokens, K rows of transposed_width(T)
// floats each, one after another: the kernel works a panel at a time, and a panel's rows lie
// together (rows of all T tokens, 4 KB apart from T = 1024 on, put each k of a block in
// another page).
constexpr int64_t kXtPanel = 128;
int64_t transposed_width(int64_t T);              // min(kXtPanel, T rounded up to kXtAlign)
int64_t transposed_floats(int64_t T, int64_t K);  // the whole of xt
// Rows [k0, k1) of every panel: x[t * K + k] for t < T, 0 for t >= T; worked
// kTransposeStrip columns of x at a time (one cache line of each x row read, as many rows of
// xt written), so ranges split at multiples of it touch no line twice.
constexpr int64_t kTransposeStrip = 16;
void transpose_rows(const float* x, int64_t T, int64_t K, int64_t k0, int64_t k1, float* xt,
                    int64_t ldxt);

// Token rows in ggml's 8-bit activation blocks for a weight of some quantized type
// (activations_as_q8): per row, K values, a scale per 32 values and, per group of 16, the
// sum of the quantized activations (scale times the sum of the values).
struct QuantActivations {
  std::vector<int16_t> q;    // [T, K]
  std::vector<float> d;      // [T, K / 32]
  std::vector<float> sum16;  // [T, K / 16]
  std::vector<int8_t> q8;    // [T, K]: q as bytes
  std::vector<float> d4;     // [T, K / 4]: the scale of every 4 values
};
void quantize_activations(QuantType w, const float* x, int64_t T, int64_t K, QuantActivations& out);
// Whether type t's values carry a per-group offset (x = d * q + m).
bool quant_has_min(QuantType t);

// out[t][n] = sum_k xhat[t][k] * w[n][k] for n in [n_begin, n_end), xhat the quantized
// activations, w a row-major [N, K] tensor of blocks of type wtype.
struct QuantMatmulArgs {
  const QuantActivations* x;
  const void* w;
  QuantType wtype;
  float* out;  // [T, N]
  int64_t T, K, N;
};
void quant_matmul_range(const QuantMatmulArgs& a, int64_t n_begin, int64_t n_end);

// Causal grouped-query attention for the (head, row) tasks [task_begin, task_end), task =
// h * T + t (see the catalog's attention). Head-major, so that a contiguous range of tasks
// holds whole causal triangles (balanced work) and shares K/V rows.
struct AttentionArgs {
  const float* q;  // [T, H*hd]
  const void* k;   // [P, KV*hd], f32, or f16 when kv_f16
  const void* v;   // [P, KV*hd], as k
  float* out;      // [T, H*hd]
  int64_t T, P, H, KV, hd;
  float scale;
  int64_t window = 0;   // 0: none; else keys i - window < j <= i
  float softcap = 0;    // 0: none; else scores become softcap * tanh(score / softcap)
  bool kv_f16 = false;  // k and v hold f16 (a half-precision KV cache)
  // For attention_tiles_range: the keys transposed by transpose_keys, per KV head hd rows of
  // ldkt floats, kt[(kh * hd + d) * ldkt + j] = k[j][kh * hd + d] (widened), 0 for j >= P.
  const float* kt = nullptr;
  int64_t ldkt = 0;  // transposed_keys_width(P)
};
void attention_range(const AttentionArgs& a, int64_t task_begin, int64_t task_end);
// Prefill, from kAttentionTileRows * 2 rows: tasks h * ceil(T / kAttentionTileRows) + b, the
// query rows b * kAttentionTileRows .. of head h, scored as outer products over kt (see
// kernels.cpp). The same bits however the tasks are split; not those of attention_range.
constexpr int64_t kAttentionTileRows = 8;
void attention_tiles_range(const AttentionArgs& a, int64_t task_begin, int64_t task_end);
// kt's rows [row_begin, row_end) of KV * hd (split over rows as the caller likes).
void transpose_keys(const AttentionArgs& a, int64_t row_begin, int64_t row_end, float* kt);
// kt's row length for P positions: room past P for whole vectors of keys from any start.
int64_t transposed_keys_width(int64_t P);
// dst[i] = src[i] as f16, rounded to nearest even (bit-identical to core's f32_to_f16).
void store_f16(const float* src, int64_t n, uint16_t* dst);

// dst[i] = src[i] as f32.
void convert_to_f32(const void* src, WeightType type, int64_t n, float* dst);
// Sum of x[i]^2.
float sum_squares(const float* x, int64_t n);
// out[i] = x[i] * s * w[i]; out may alias x.
void scale_mul(const float* x, float s, const float* w, float* out, int64_t n);
// out[i] = g[i] * sigmoid(g[i]) * u[i].
void swiglu(const float* g, const float* u, float* out, int64_t n);
// out[i] = a[i] + b[i].
void add(const float* a, const float* b, float* out, int64_t n);
// out[i] = gelu(x[i]) (see the catalog's gelu): x * Phi(x) when !tanh_form, else the tanh
// approximation. out may alias x.
void gelu(const float* x, bool tanh_form, float* out, int64_t n);

// One layer-normalized row: out[i] = (x[i] - mean) / sqrt(var + eps) * w[i], mean and the
// biased variance of x, the variance from the deviations; out may alias x.
void layernorm_row(const float* x, const float* w, double eps, float* out, int64_t n);
// out[i] = a[i] * b[i].
void mul(const float* a, const float* b, float* out, int64_t n);
// out[i] = x[i] * s; out may alias x.
void scale(const float* x, float s, float* out, int64_t n);
// out[i] = cap * tanh(x[i] / cap); out may alias x.
void softcap(const float* x, float cap, float* out, int64_t n);

// The instruction set the kernels run with on this CPU ("AVX2", "AVX3", ...).
const char* simd_target();

}  // namespace tapml::cpu

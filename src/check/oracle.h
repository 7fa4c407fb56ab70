// The oracle: judges a target's outputs of one op call against the source's, with a
// tolerance per op and dtype that scales with the reduction length and is calibrated from
// measured noise. Checks run in order and the first failure is the verdict: shape and
// dtype, guard bytes (out-of-bounds writes), NaN, Inf (with sign), then the numeric error.
// Integer outputs compare exactly.
//
// The error measure of one output is E = max_i |actual_i - expected_i| / S, with S the
// largest |expected_j| (or 1e-30 when all are zero): one number per output that does not
// blow up on elements near zero. The noise floor of a test is E of a plain-f32 computation
// against the f64-accumulating source, measured at carve time.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/op.h"

namespace tapml {

// The backend whose distance from the source is a test's noise floor: the reference loops
// with plain f32 sums, sequential order (docs/oracle.md). Used wherever noise is measured.
inline constexpr const char* kNoiseReference = "ref?acc=f32";
// The same with activations rounded to 8 bits before matmuls with quantized weights, as ggml
// computes them: the end-to-end noise of a model with quantized weights (migrate).
inline constexpr const char* kQuantizedNoiseReference = "ref?acc=q8";

struct ErrorMetrics {
  double error = 0;  // E above
  double max_abs = 0;
  double max_rel = 0;                         // max |a - e| / |e| over elements with |e| > 0
  double nmse = 0;                            // sum (a - e)^2 / sum e^2
  double cosine = 1;                          // cosine similarity
  double frac_out = 0;                        // share of elements with |a - e| > tolerance * S
  int64_t nan = 0, pos_inf = 0, neg_inf = 0;  // in actual, where expected is finite
  int64_t elements = 0;
  // max_abs, max_rel, nmse and cosine cover the elements where both sides are finite.
  double scale = 0;          // S above
  int64_t worst_index = -1;  // flat index of max_abs
  int64_t first_nan = -1, first_inf = -1;
  // NaNs that still hold run_host_call's poison bits: elements the kernel never wrote.
  int64_t unwritten = 0;
  // Elements where expected is NaN or Inf and actual is not the same special value.
  int64_t mismatched_special = 0, first_special = -1;
};

// Compares two f32 (or i32) tensors of equal shape. `tolerance` (in units of E) decides
// frac_out only.
ErrorMetrics measure(const Tensor& expected, const Tensor& actual, double tolerance);

enum class CheckKind { Pass, Shape, Dtype, Guard, NaN, Inf, Numeric, Exact };
const char* check_name(CheckKind k);

struct OutputVerdict {
  CheckKind failed = CheckKind::Pass;
  std::string detail;  // one line a user can act on
  ErrorMetrics metrics;
  double tolerance = 0;       // in units of E
  double ratio = 0;           // metrics.error / tolerance: > 1 fails; +inf for a failure of
                              // another check (shape ... inf, exact); 0 for a passing copy
  double noise = -1;          // the calibrated floor used, -1 when none
  double noise_multiple = 0;  // metrics.error / noise (0 when no noise)
  double allowance = -1;      // the formulation allowance given (see judge), -1 when none
};

struct Verdict {
  bool pass = true;
  std::vector<OutputVerdict> outputs;
  // The worst output: its check and ratio, for summaries.
  CheckKind failed = CheckKind::Pass;
  double worst_ratio = 0;
  std::string detail;
};

class TolerancePolicy {
 public:
  // How many times the measured noise floor a target may reach.
  double noise_multiple = 16;
  // matmul with a quantized weight: how many times the error of ggml's 8-bit activation
  // formulation of the call (activation_allowance) a target may reach, and the least
  // allowance (docs/oracle.md, "Quantized weights").
  double activation_multiple = 2;
  double activation_floor = 1.0 / 1024;
  // swiglu, sigmoid_gate: how many times the error of an exp within the Vulkan
  // specification's precision a target may reach (exp_allowance).
  double exp_multiple = 2;
  // Tolerance of an op (in units of E) before calibration, for reduction length K:
  // floor = unit * sqrt(K) * 2^-24 * factor(op), with factor larger for ops that use
  // transcendental functions. Never below `min_tolerance`.
  double min_tolerance = 1e-6;

  // The tolerance for one output. `noise` < 0 means uncalibrated (floor only).
  double tolerance(Op op, DType dtype, int64_t reduction_length, double noise) const;

  // The part that does not depend on the noise: max(min_tolerance, factor * sqrt(K) * u),
  // with u the unit roundoff of the output dtype (2^-24 for f32); 0 for exact outputs.
  // tolerance() = max(noise_multiple * noise, floor) when calibrated, else the floor.
  double floor(Op op, DType dtype, int64_t reduction_length, bool calibrated = true) const;
  // Outputs that must be bit-exact: copies (embedding, kv_store) and integer outputs.
  static bool exact(Op op, DType dtype);
  // The per-op constant c_op of the floor, from the catalog (OpDef::tolerance).
  static double factor(Op op, bool calibrated = true);
};

// The error a legitimate faster formulation of this call may add beyond f32 rounding, per
// output in units of E, or empty when the call has none: for matmul with a quantized weight,
// max(activation_multiple * E_q8, activation_floor), E_q8 the error of the call computed with
// its activations quantized as ggml quantizes them (activations_as_q8: Q8_0 blocks for the
// legacy types, Q8_K for the K-quants) and f64 sums, against `expected`.
std::vector<double> activation_allowance(const TolerancePolicy& policy, Op op,
                                         std::span<const Tensor> inputs,
                                         std::span<const Tensor> expected);

// The error a sigmoid may carry when its exp is as precise as the Vulkan specification
// requires (3 + 2|x| ulp for exp(x); OpenCL's and CUDA's fast exps are of the same form) and
// may flush or clamp results below the smallest normal f32, per output in units of E, or
// empty for ops without such a sigmoid. For swiglu and sigmoid_gate, whose outputs are
// a * sigmoid(x) (a = gate * up, or x): an exp off by d (relative) moves sigmoid(x) by
// d (1 - sigmoid(x)), and one below 2^-126 may be off by up to 16 x 2^-126 absolute, so the
// allowance is exp_multiple * max over the elements of
// (2^-24 (3 + 2|x|) (1 - sigmoid(x)) |expected| + 2^-122 |a|) / S. It matters only for gates
// far beyond a small model's range (stress variants): rows whose gates are all strongly
// negative give outputs that are all tiny, and E then sees the exp's own error in full.
std::vector<double> exp_allowance(const TolerancePolicy& policy, Op op,
                                  std::span<const Tensor> inputs, std::span<const Tensor> expected);

// What an op's outputs may err beyond their tolerance: activation_allowance where it
// applies, else exp_allowance (empty for ops with neither). Every comparison of a target
// against the source (replay, isolated comparison in migrate) asks here.
std::vector<double> allowance(const TolerancePolicy& policy, Op op, std::span<const Tensor> inputs,
                              std::span<const Tensor> expected);

// Judges every output. `guards_intact` may be empty (no guard information). `noise` holds
// one floor per output or is empty. Reduction length and dtype come from the catalog.
// `allowance` is empty or holds one activation_allowance or exp_allowance per output; an
// output's tolerance is then the larger of its own and its allowance.
Verdict judge(const TolerancePolicy& policy, Op op, int64_t reduction_length,
              std::span<const Tensor> expected, std::span<const Tensor> actual,
              const std::vector<bool>& guards_intact, std::span<const double> noise,
              std::span<const double> allowance = {});

}  // namespace tapml

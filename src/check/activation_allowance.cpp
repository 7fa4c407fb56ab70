// The oracle's allowance for matmul with a quantized weight (docs/oracle.md, "Quantized
// weights"): the call recomputed the way ggml's dot products compute it, activations
// quantized to 8 bits per block, with exact weights and f64 sums, and its error measured
// against the source's output.
#include <algorithm>
#include <vector>

#include "check/oracle.h"
#include "core/dtype.h"
#include "core/quant.h"

namespace tapml {

std::vector<double> activation_allowance(const TolerancePolicy& policy, Op op,
                                         std::span<const Tensor> inputs,
                                         std::span<const Tensor> expected) {
  if (op != Op::Matmul || inputs.size() < 2 || expected.size() != 1) return {};
  const Tensor& x = inputs[0];
  const Tensor& w = inputs[1];
  const Tensor& out = expected[0];
  if (!is_block(w.dtype()) || x.dtype() != DType::F32 || out.dtype() != DType::F32) return {};
  if (x.shape().rank() != 2 || w.shape().rank() != 2 || out.shape().rank() != 2) return {};
  const int64_t T = x.shape()[0], K = x.shape()[1], N = w.shape()[0];
  if (w.shape()[1] != K || out.shape()[0] != T || out.shape()[1] != N) return {};
  const QuantType qt = *block_quant(w.dtype());
  if (K % quant_block_elems(qt) != 0) return {};

  std::vector<double> xhat(size_t(T * K));
  {
    std::vector<float> q(static_cast<size_t>(K));
    for (int64_t t = 0; t < T; ++t) {
      activations_as_q8(qt, x.data<float>() + t * K, q.data(), K);
      std::copy(q.begin(), q.end(), xhat.begin() + t * K);
    }
  }
  const size_t stride = row_bytes(w.dtype(), K);
  std::vector<float> wrow(static_cast<size_t>(K));
  const float* e = out.data<float>();
  double max_diff = 0, scale = 0;
  for (int64_t n = 0; n < N; ++n) {
    dequantize_row(qt, w.bytes() + size_t(n) * stride, wrow.data(), K);
    for (int64_t t = 0; t < T; ++t) {
      const double* xt = xhat.data() + t * K;
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += xt[k] * double(wrow[size_t(k)]);
      const double ref = e[t * N + n];
      max_diff = std::max(max_diff, std::abs(s - ref));
      scale = std::max(scale, std::abs(ref));
    }
  }
  const double e_q8 = max_diff / std::max(scale, 1e-30);
  return {std::max(policy.activation_multiple * e_q8, policy.activation_floor)};
}

}  // namespace tapml

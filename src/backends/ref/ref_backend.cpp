#include "backends/ref/ref_backend.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/host_backend.h"
#include "core/error.h"
#include "core/quant.h"

namespace tapml {

namespace {

// A is the accumulation type: double for the source platform, float for the plain-f32
// computation whose distance from the source is a test's noise floor. `q8_activations`
// (acc=q8, with float sums): matmul with a quantized weight first rounds each activation row
// as ggml's dot products do (activations_as_q8), the formulation the oracle allows for
// quantized weights; migrate calibrates a quantized model's end-to-end threshold with it.
template <class A>
class RefBackend final : public HostBackend {
 public:
  explicit RefBackend(const std::string& uri, bool q8_activations = false)
      : HostBackend({uri, "ref",
                     std::is_same_v<A, double> ? "reference (host, f64 accumulation)"
                     : q8_activations
                         ? "reference loops with f32 accumulation and 8-bit activations for "
                           "quantized weights"
                         : "reference loops with f32 accumulation"}),
        q8_activations_(q8_activations) {
    kernels().add(Op::Embedding, this, &RefBackend::embedding);
    kernels().add(Op::RmsNorm, this, &RefBackend::rmsnorm);
    kernels().add(Op::Matmul, this, &RefBackend::matmul);
    const std::vector<DType> blocks(std::begin(kBlockDTypes), std::end(kBlockDTypes));
    kernels().add(Op::Matmul, this, &RefBackend::matmul_blocks, {{DType::F32}, blocks});
    kernels().add(Op::Embedding, this, &RefBackend::embedding_blocks, {blocks, {DType::I32}});
    kernels().add(Op::Rope, this, &RefBackend::rope, {}, {"freq_factors"});
    kernels().add(Op::KvStore, this, &RefBackend::kv_store);
    kernels().add(Op::Attention, this, &RefBackend::attention, {}, {"window", "softcap"});
    kernels().add(Op::Swiglu, this, &RefBackend::swiglu);
    kernels().add(Op::Add, this, &RefBackend::add);
    kernels().add(Op::Gelu, this, &RefBackend::gelu);
    kernels().add(Op::LayerNorm, this, &RefBackend::layernorm);
    kernels().add(Op::Bias, this, &RefBackend::bias);
    kernels().add(Op::Mul, this, &RefBackend::mul);
    kernels().add(Op::Scale, this, &RefBackend::scale);
    kernels().add(Op::Softcap, this, &RefBackend::softcap);
    kernels().add(Op::SigmoidGate, this, &RefBackend::sigmoid_gate);
    kernels().add(Op::MoeRoute, this, &RefBackend::moe_route);
    kernels().add(Op::MoeFfn, this, &RefBackend::moe_ffn);
  }

 private:
  // Reads elements of a weight tensor of any float dtype as f64.
  struct Weights {
    const std::byte* p;
    DType dtype;
    A operator()(int64_t i) const {
      switch (dtype) {
        case DType::F32:
          return reinterpret_cast<const float*>(p)[i];
        case DType::F16:
          return f16_to_f32(reinterpret_cast<const uint16_t*>(p)[i]);
        case DType::BF16:
          return bf16_to_f32(reinterpret_cast<const uint16_t*>(p)[i]);
        default:
          break;
      }
      throw Error("ref: weight must be a float type, not " + std::string(dtype_name(dtype)));
    }
  };
  Weights weights(const DeviceTensor& t) const { return {ptr(t), t.dtype}; }

  void embedding(const OpCall& c) {
    const DeviceTensor& table = c.inputs[0];
    Weights weight = weights(table);
    const int32_t* ids = data<int32_t>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    int64_t T = c.inputs[1].shape[0], V = table.shape[0], D = table.shape[1];
    for (int64_t t = 0; t < T; ++t) {
      TAPML_REQUIRE(ids[t] >= 0 && ids[t] < V, "embedding: token id " + std::to_string(ids[t]) +
                                                   " outside the vocabulary of " +
                                                   std::to_string(V));
      for (int64_t d = 0; d < D; ++d) out[t * D + d] = float(weight(ids[t] * D + d));
    }
  }

  // Block-type tables and matrices: each row is dequantized with dequantize_row (ggml's
  // arithmetic, bit for bit), then used exactly as an f32 row, so a quantized model computes
  // what its dequantized f32 copy does.
  void embedding_blocks(const OpCall& c) {
    const DeviceTensor& table = c.inputs[0];
    const QuantType q = *block_quant(table.dtype);
    const int32_t* ids = data<int32_t>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    int64_t T = c.inputs[1].shape[0], V = table.shape[0], D = table.shape[1];
    const size_t rb = row_bytes(table.dtype, D);
    for (int64_t t = 0; t < T; ++t)
      TAPML_REQUIRE(ids[t] >= 0 && ids[t] < V, "embedding: token id " + std::to_string(ids[t]) +
                                                   " outside the vocabulary of " +
                                                   std::to_string(V));
    for (int64_t t = 0; t < T; ++t)
      dequantize_row(q, ptr(table) + size_t(ids[t]) * rb, out + t * D, D);
  }

  void matmul_blocks(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    const DeviceTensor& w = c.inputs[1];
    const QuantType q = *block_quant(w.dtype);
    float* out = data<float>(c.outputs[0]);
    int64_t T = c.inputs[0].shape[0], K = c.inputs[0].shape[1], N = w.shape[0];
    const size_t rb = row_bytes(w.dtype, K);
    std::vector<float> row(static_cast<size_t>(K)), xq;
    if (q8_activations_) {
      xq.resize(size_t(T * K));
      for (int64_t t = 0; t < T; ++t) activations_as_q8(q, x + t * K, xq.data() + t * K, K);
      x = xq.data();
    }
    for (int64_t n = 0; n < N; ++n) {
      dequantize_row(q, ptr(w) + size_t(n) * rb, row.data(), K);
      for (int64_t t = 0; t < T; ++t) {
        A acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += A(x[t * K + k]) * A(row[size_t(k)]);
        out[t * N + n] = float(acc);
      }
    }
  }

  void rmsnorm(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    float* out = data<float>(c.outputs[0]);
    int64_t T = c.inputs[0].shape[0], D = c.inputs[0].shape[1];
    A eps = c.attrs.get("eps");
    Weights weight = weights(c.inputs[1]);
    for (int64_t t = 0; t < T; ++t) {
      A ss = 0;
      for (int64_t d = 0; d < D; ++d) ss += A(x[t * D + d]) * x[t * D + d];
      A inv = 1.0 / std::sqrt(ss / A(D) + eps);
      for (int64_t d = 0; d < D; ++d) out[t * D + d] = float(x[t * D + d] * inv * weight(d));
    }
  }

  void matmul(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    Weights w = weights(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    int64_t T = c.inputs[0].shape[0], K = c.inputs[0].shape[1], N = c.inputs[1].shape[0];
    for (int64_t t = 0; t < T; ++t)
      for (int64_t n = 0; n < N; ++n) {
        A acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += A(x[t * K + k]) * w(n * K + k);
        out[t * N + n] = float(acc);
      }
  }

  void rope(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    const int32_t* pos = data<int32_t>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    int64_t T = c.inputs[0].shape[0], W = c.inputs[0].shape[1];
    int64_t H = c.attrs.get_int("n_heads"), hd = c.attrs.get_int("head_dim");
    int64_t rd = c.attrs.get_int("rope_dim");
    A base = c.attrs.get("base");
    bool neox = c.attrs.get_int("pairing") == 1;
    const float* factors = c.inputs.size() > 2 ? data<float>(c.inputs[2]) : nullptr;
    std::vector<float> row(static_cast<size_t>(W));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t i = 0; i < W; ++i) row[size_t(i)] = x[t * W + i];  // out may alias x
      for (int64_t h = 0; h < H; ++h) {
        float* o = out + t * W + h * hd;
        const float* r = row.data() + h * hd;
        for (int64_t i = 0; i < hd; ++i) o[i] = r[i];
        for (int64_t i = 0; i < rd / 2; ++i) {
          // The frequency stays in f64 in both modes (-2.0 is a double), so that the angle is
          // rounded once: the noise reference's rope error is that of one rounded angle.
          const double divisor = factors ? double(factors[i]) : 1.0;
          A theta = A(pos[t]) * (std::pow(base, -2.0 * A(i) / A(rd)) / divisor);
          A cs = std::cos(theta), sn = std::sin(theta);
          int64_t a = neox ? i : 2 * i, b = neox ? i + rd / 2 : 2 * i + 1;
          o[a] = float(r[a] * cs - r[b] * sn);
          o[b] = float(r[a] * sn + r[b] * cs);
        }
      }
    }
  }

  void kv_store(const OpCall& c) {
    int64_t S = c.inputs[0].shape[0], C = c.inputs[0].shape[1], T = c.inputs[2].shape[0];
    int64_t p = data<int32_t>(c.inputs[4])[0];
    TAPML_REQUIRE(p >= 0 && p + T <= S, "kv_store: rows " + std::to_string(p) + ".." +
                                            std::to_string(p + T) + " do not fit a cache of " +
                                            std::to_string(S));
    for (int cache = 0; cache < 2; ++cache) {
      const float* src = data<float>(c.inputs[2 + cache]);
      if (c.outputs[cache].dtype == DType::F16) {
        uint16_t* dst = data<uint16_t>(c.outputs[cache]);
        for (int64_t i = 0; i < T * C; ++i) dst[p * C + i] = f32_to_f16(src[i]);
      } else {
        float* dst = data<float>(c.outputs[cache]);
        for (int64_t i = 0; i < T * C; ++i) dst[p * C + i] = src[i];
      }
    }
  }

  // A cache tensor's elements as f32: the data itself, or widened into `copy` (f16).
  const float* cache_f32(const DeviceTensor& t, std::vector<float>& copy) const {
    if (t.dtype == DType::F32) return data<float>(t);
    const Weights w = weights(t);
    copy.resize(size_t(t.shape.numel()));
    for (size_t i = 0; i < copy.size(); ++i) copy[i] = float(w(int64_t(i)));
    return copy.data();
  }

  void attention(const OpCall& c) {
    const float* q = data<float>(c.inputs[0]);
    std::vector<float> k_copy, v_copy;
    const float* k = cache_f32(c.inputs[1], k_copy);
    const float* v = cache_f32(c.inputs[2], v_copy);
    float* out = data<float>(c.outputs[0]);
    int64_t T = c.inputs[0].shape[0], P = c.inputs[1].shape[0];
    int64_t H = c.attrs.get_int("n_heads"), KV = c.attrs.get_int("n_kv_heads");
    int64_t hd = c.attrs.get_int("head_dim");
    A scale = c.attrs.get("scale");
    const int64_t window = int64_t(c.attrs.get_or("window", 0));
    const A cap = A(c.attrs.get_or("softcap", 0));
    int64_t qw = H * hd, kw = KV * hd, group = H / KV;
    std::vector<A> score(static_cast<size_t>(P));
    for (int64_t t = 0; t < T; ++t) {
      int64_t last = P - T + t;  // causal: keys 0..last
      // The sliding window: keys last - window + 1 .. last.
      int64_t first = window > 0 ? std::max<int64_t>(0, last - window + 1) : 0;
      for (int64_t h = 0; h < H; ++h) {
        const float* qh = q + t * qw + h * hd;
        int64_t kh = h / group;
        A mx = -INFINITY;
        for (int64_t j = first; j <= last; ++j) {
          A s = 0;
          for (int64_t i = 0; i < hd; ++i) s += A(qh[i]) * k[j * kw + kh * hd + i];
          s *= scale;
          if (cap > 0) s = cap * std::tanh(s / cap);
          score[size_t(j)] = s;
          mx = std::max(mx, score[size_t(j)]);
        }
        A sum = 0;
        for (int64_t j = first; j <= last; ++j)
          sum += (score[size_t(j)] = std::exp(score[size_t(j)] - mx));
        for (int64_t i = 0; i < hd; ++i) {
          A acc = 0;
          for (int64_t j = first; j <= last; ++j) acc += score[size_t(j)] * v[j * kw + kh * hd + i];
          out[t * qw + h * hd + i] = float(acc / sum);
        }
      }
    }
  }

  void swiglu(const OpCall& c) {
    const float* g = data<float>(c.inputs[0]);
    const float* u = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    for (int64_t i = 0; i < c.inputs[0].shape.numel(); ++i) {
      A x = g[i];
      out[i] = float(x / (1.0 + std::exp(-x)) * u[i]);
    }
  }

  void add(const OpCall& c) {
    const float* a = data<float>(c.inputs[0]);
    const float* b = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    for (int64_t i = 0; i < c.inputs[0].shape.numel(); ++i) out[i] = float(A(a[i]) + b[i]);
  }

  // 0.5 x (1 + erf(x / sqrt 2)) as 0.5 x erfc(-x / sqrt 2), and 0.5 x (1 + tanh z) as
  // x / (1 + exp(-2z)): the same functions without the cancellation that erases them for
  // negative x (below x = -5.3 in f32, -8.3 in f64).
  void gelu(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    float* out = data<float>(c.outputs[0]);
    const bool tanh_form = c.attrs.get_int("approx") == 1;
    const A sqrt_half = A(0.70710678118654752440), sqrt_2_over_pi = A(0.79788456080286535588);
    for (int64_t i = 0; i < c.inputs[0].shape.numel(); ++i) {
      const A v = x[i];
      if (tanh_form) {
        const A z = sqrt_2_over_pi * (v + A(0.044715) * v * v * v);
        out[i] = float(v / (A(1) + std::exp(A(-2) * z)));
      } else {
        out[i] = float(A(0.5) * v * std::erfc(-v * sqrt_half));
      }
    }
  }

  // Two passes: the variance from the deviations (see the catalog's layernorm).
  void layernorm(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    const float* w = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], N = c.inputs[0].shape[1];
    const A eps = A(c.attrs.get("eps"));
    for (int64_t t = 0; t < T; ++t) {
      const float* r = x + t * N;
      A sum = 0;
      for (int64_t i = 0; i < N; ++i) sum += r[i];
      const A mean = sum / A(N);
      A ss = 0;
      for (int64_t i = 0; i < N; ++i) ss += (A(r[i]) - mean) * (A(r[i]) - mean);
      const A inv = A(1) / std::sqrt(ss / A(N) + eps);
      for (int64_t i = 0; i < N; ++i) out[t * N + i] = float((A(r[i]) - mean) * inv * A(w[i]));
    }
  }

  void bias(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    const float* b = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], N = c.inputs[0].shape[1];
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < N; ++i) out[t * N + i] = float(A(x[t * N + i]) + A(b[i]));
  }

  void mul(const OpCall& c) {
    const float* a = data<float>(c.inputs[0]);
    const float* b = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    for (int64_t i = 0; i < c.inputs[0].shape.numel(); ++i) out[i] = float(A(a[i]) * A(b[i]));
  }

  void scale(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    float* out = data<float>(c.outputs[0]);
    const A s = A(c.attrs.get("s"));
    for (int64_t i = 0; i < c.inputs[0].shape.numel(); ++i) out[i] = float(A(x[i]) * s);
  }

  void softcap(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    float* out = data<float>(c.outputs[0]);
    const A cap = A(c.attrs.get("cap"));
    for (int64_t i = 0; i < c.inputs[0].shape.numel(); ++i)
      out[i] = float(cap * std::tanh(A(x[i]) / cap));
  }

  // 1 / (1 + e^-z), formed so that no exp overflows.
  static A sigmoid(A z) {
    if (z >= 0) return A(1) / (A(1) + std::exp(-z));
    const A e = std::exp(z);
    return e / (A(1) + e);
  }

  void sigmoid_gate(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    const float* g = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], N = c.inputs[0].shape[1];
    for (int64_t t = 0; t < T; ++t) {
      const A s = sigmoid(A(g[t]));
      for (int64_t i = 0; i < N; ++i) out[t * N + i] = float(A(x[t * N + i]) * s);
    }
  }

  void moe_route(const OpCall& c) {
    const float* logits = data<float>(c.inputs[0]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], E = c.inputs[0].shape[1];
    const int64_t k = c.attrs.get_int("k");
    const bool norm = c.attrs.get_int("norm") == 1;
    std::vector<A> p(static_cast<size_t>(E));
    std::vector<int64_t> order(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t) {
      const float* l = logits + t * E;
      A mx = -INFINITY, sum = 0;
      for (int64_t e = 0; e < E; ++e) mx = std::max(mx, A(l[e]));
      for (int64_t e = 0; e < E; ++e) sum += (p[size_t(e)] = std::exp(A(l[e]) - mx));
      // The k largest logits, the lower index first among equals (a stable sort).
      for (int64_t e = 0; e < E; ++e) order[size_t(e)] = e;
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return l[a] > l[b]; });
      A chosen = 0;
      for (int64_t i = 0; i < k; ++i) chosen += p[size_t(order[size_t(i)])] / sum;
      for (int64_t e = 0; e < E; ++e) out[t * E + e] = 0;
      for (int64_t i = 0; i < k; ++i) {
        const int64_t e = order[size_t(i)];
        const A r = p[size_t(e)] / sum;
        out[t * E + e] = float(norm ? r / chosen : r);
      }
    }
  }

  void moe_ffn(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    const float* route = data<float>(c.inputs[1]);
    Weights gate = weights(c.inputs[2]), up = weights(c.inputs[3]), down = weights(c.inputs[4]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], D = c.inputs[0].shape[1];
    const int64_t E = c.inputs[1].shape[1], H = c.inputs[2].shape[1];
    std::vector<A> act(static_cast<size_t>(H)), acc(static_cast<size_t>(D));
    for (int64_t t = 0; t < T; ++t) {
      const float* xt = x + t * D;
      std::fill(acc.begin(), acc.end(), A(0));
      for (int64_t e = 0; e < E; ++e) {
        const A r = route[t * E + e];
        if (r == 0) continue;  // not computed: its weights may hold anything
        for (int64_t h = 0; h < H; ++h) {
          A g = 0, u = 0;
          for (int64_t d = 0; d < D; ++d) {
            g += A(xt[d]) * gate((e * H + h) * D + d);
            u += A(xt[d]) * up((e * H + h) * D + d);
          }
          act[size_t(h)] = g / (A(1) + std::exp(-g)) * u;
        }
        for (int64_t d = 0; d < D; ++d) {
          A s = 0;
          for (int64_t h = 0; h < H; ++h) s += down((e * D + d) * H + h) * act[size_t(h)];
          acc[size_t(d)] += r * s;
        }
      }
      for (int64_t d = 0; d < D; ++d) out[t * D + d] = float(acc[size_t(d)]);
    }
  }

  const bool q8_activations_;
};

}  // namespace

std::unique_ptr<Backend> make_ref_backend(const BackendUri& uri) {
  uri.allow_params({"acc"});
  TAPML_REQUIRE_USAGE(uri.target.empty(),
                      "backend URI '" + uri.text + "': ref takes no device name");
  const std::string acc = uri.param("acc", "f64");
  if (acc == "f64") return std::make_unique<RefBackend<double>>(uri.text);
  if (acc == "f32") return std::make_unique<RefBackend<float>>(uri.text);
  if (acc == "q8") return std::make_unique<RefBackend<float>>(uri.text, true);
  throw UsageError("backend URI '" + uri.text + "': acc=" + acc + " (use f64, f32 or q8)");
}

}  // namespace tapml

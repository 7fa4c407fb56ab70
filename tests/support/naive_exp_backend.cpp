#include "support/naive_exp_backend.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/forwarding_backend.h"
#include "backend/registry.h"
#include "backends/builtin.h"

namespace tapml::testing {

namespace {

class NaiveExpBackend final : public ForwardingBackend {
 public:
  NaiveExpBackend() : ForwardingBackend(open_backend("cpu")) {
    info_ = inner().info();
    info_.uri = info_.name = "naive_exp";
  }
  const BackendInfo& info() const override { return info_; }

  void run(const OpCall& c) override {
    if (c.op != Op::Attention && c.op != Op::Swiglu && c.op != Op::SigmoidGate)
      return inner().run(c);
    inner().sync();
    if (c.op == Op::Attention) return attention(c);
    const std::vector<float> x = read(c.inputs[0]), y = read(c.inputs[1]);
    std::vector<float> out(x.size());
    if (c.op == Op::Swiglu) {
      for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * sigmoid(x[i]) * y[i];
    } else {  // sigmoid_gate: x [T, N] times sigmoid of one gate per row
      const size_t n = size_t(c.inputs[0].shape[1]);
      for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * sigmoid(y[i / n]);
    }
    write(c.outputs[0], out);
  }

 private:
  // The textbook form: exp(x) / (1 + exp(x)), Inf / Inf past x = 88.7.
  static float sigmoid(float x) {
    const float e = std::exp(x);
    return e / (1.0f + e);
  }

  void attention(const OpCall& c) {
    const std::vector<float> q = read(c.inputs[0]), k = read(c.inputs[1]), v = read(c.inputs[2]);
    const int64_t T = c.inputs[0].shape[0], P = c.inputs[1].shape[0];
    const int64_t H = c.attrs.get_int("n_heads"), KV = c.attrs.get_int("n_kv_heads");
    const int64_t hd = c.attrs.get_int("head_dim"), window = int64_t(c.attrs.get_or("window", 0));
    const float scale = float(c.attrs.get("scale")), cap = float(c.attrs.get_or("softcap", 0));
    std::vector<float> out(q.size()), weight(static_cast<size_t>(P));
    for (int64_t t = 0; t < T; ++t) {
      const int64_t last = P - T + t;
      const int64_t first = window > 0 ? std::max<int64_t>(0, last - window + 1) : 0;
      for (int64_t h = 0; h < H; ++h) {
        const float* qh = q.data() + (t * H + h) * hd;
        const int64_t kh = h / (H / KV);
        // "Softmax is shift-invariant, so the max is only there for stability": exp of the
        // raw score.
        float sum = 0;
        for (int64_t j = first; j <= last; ++j) {
          const float* kj = k.data() + (j * KV + kh) * hd;
          float s = 0;
          for (int64_t i = 0; i < hd; ++i) s += qh[i] * kj[i];
          s *= scale;
          if (cap > 0) s = cap * std::tanh(s / cap);
          sum += weight[size_t(j)] = std::exp(s);
        }
        for (int64_t i = 0; i < hd; ++i) {
          float acc = 0;
          for (int64_t j = first; j <= last; ++j)
            acc += weight[size_t(j)] * v[size_t((j * KV + kh) * hd + i)];
          out[size_t((t * H + h) * hd + i)] = acc / sum;
        }
      }
    }
    write(c.outputs[0], out);
  }

  // The catalog gives these ops f32 inputs and outputs only.
  std::vector<float> read(const DeviceTensor& t) {
    std::vector<float> v(size_t(t.shape.numel()));
    inner().read(t.buffer, t.offset, v.data(), v.size() * sizeof(float));
    return v;
  }
  void write(const DeviceTensor& t, const std::vector<float>& v) {
    inner().write(t.buffer, t.offset, v.data(), v.size() * sizeof(float));
  }

  BackendInfo info_;
};

}  // namespace

std::unique_ptr<Backend> make_naive_exp_backend() { return std::make_unique<NaiveExpBackend>(); }

void register_naive_exp_backend() {
  static const bool registered = [] {
    register_builtin_backends();
    register_backend("naive_exp", "cpu with textbook f32 exp in softmax and sigmoid (tests)",
                     [](const BackendUri& uri) {
                       uri.allow_params({});
                       return make_naive_exp_backend();
                     });
    return true;
  }();
  (void)registered;
}

}  // namespace tapml::testing

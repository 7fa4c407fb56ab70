#include "support/tiny_model.h"

#include <cmath>
#include <random>
#include <vector>

#include "model/families/families.h"

namespace tapml::testing {

ModelFile make_tiny_llama(uint32_t seed, DType dtype, ModelConfig c) {
  if (c.dim == 0) {
    c.dim = 32, c.hidden_dim = 48, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2;
    c.vocab_size = 40, c.max_seq_len = 64;
  }
  if (c.head_dim == 0) c.head_dim = c.dim / c.n_heads;
  if (c.rope_dim == 0) c.rope_dim = c.head_dim;
  ModelFile m;
  m.path = "tiny";
  m.format = "memory";
  m.arch = "llama";
  m.config = c;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto make = [&](const std::string& name, Shape shape, float scale, bool norm) {
    if (!norm && is_block(dtype)) {  // the same draws, quantized by core's reference quantizer
      std::vector<float> v(size_t(shape.numel()));
      for (float& x : v) x = scale * normal(rng);
      m.weights[name] = Tensor::from_f32_as(dtype, shape, v);
      return;
    }
    Tensor t(norm ? DType::F32 : dtype, shape);
    for (int64_t i = 0; i < t.numel(); ++i) {
      float x = norm ? 1.0f + 0.1f * normal(rng) : scale * normal(rng);
      if (t.dtype() == DType::F32)
        t.mutable_data<float>()[i] = x;
      else if (t.dtype() == DType::F16)
        t.mutable_data<uint16_t>()[i] = f32_to_f16(x);
      else
        t.mutable_data<uint16_t>()[i] = f32_to_bf16(x);
    }
    m.weights[name] = t;
  };
  // Scale each matrix by 1/sqrt(fan-in) so activations stay near unit size.
  for (const WeightSpec& spec : llama_architecture().weights(c)) {
    float fan_in = float(spec.shape.back());
    make(spec.name, spec.shape, spec.name == "token_embd.weight" ? 1.0f : 1.0f / std::sqrt(fan_in),
         spec.norm);
  }
  return m;
}

}  // namespace tapml::testing

#include "support/tiny_model.h"

#include <random>

namespace tapml::testing {

ModelFile make_tiny_llama(uint32_t seed, DType dtype, LlamaConfig c) {
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
    Tensor t(norm ? DType::F32 : dtype, shape);
    for (int64_t i = 0; i < t.numel(); ++i) {
      float x = norm ? 1.0f + 0.1f * normal(rng) : scale * normal(rng);
      if (t.dtype() == DType::F32) t.mutable_data<float>()[i] = x;
      else if (t.dtype() == DType::F16) t.mutable_data<uint16_t>()[i] = f32_to_f16(x);
      else t.mutable_data<uint16_t>()[i] = f32_to_bf16(x);
    }
    m.weights[name] = t;
  };
  int64_t kv = int64_t(c.n_kv_heads) * c.head_dim, q = int64_t(c.n_heads) * c.head_dim;
  float s = 1.0f / std::sqrt(float(c.dim));
  make("token_embd.weight", {c.vocab_size, c.dim}, 1.0f, false);
  for (int l = 0; l < c.n_layers; ++l) {
    std::string b = "blk." + std::to_string(l) + ".";
    make(b + "attn_norm.weight", {c.dim}, 0, true);
    make(b + "attn_q.weight", {q, c.dim}, s, false);
    make(b + "attn_k.weight", {kv, c.dim}, s, false);
    make(b + "attn_v.weight", {kv, c.dim}, s, false);
    make(b + "attn_output.weight", {c.dim, q}, s, false);
    make(b + "ffn_norm.weight", {c.dim}, 0, true);
    make(b + "ffn_gate.weight", {c.hidden_dim, c.dim}, s, false);
    make(b + "ffn_up.weight", {c.hidden_dim, c.dim}, s, false);
    make(b + "ffn_down.weight", {c.dim, c.hidden_dim}, 1.0f / std::sqrt(float(c.hidden_dim)), false);
  }
  make("output_norm.weight", {c.dim}, 0, true);
  if (!c.shared_classifier) make("output.weight", {c.vocab_size, c.dim}, s, false);
  return m;
}

}  // namespace tapml::testing

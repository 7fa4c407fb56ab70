// GPT-2: learned absolute positions instead of RoPE, LayerNorms with biases, a GELU MLP,
// biases everywhere, and Conv1D weights stored [in, out].
#include <cmath>

#include "model/families/families.h"

namespace tapml {

namespace {

class Gpt2 final : public Decoder {
 public:
  std::string_view name() const override { return "gpt2"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c = gguf_common_config(f, "gpt2");
    c.rope = false;
    c.rope_dim = 0;
    c.learned_positions = true;
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = gguf_layer_norm_eps(f, "gpt2");
    c.ffn = FfnKind::Gelu;
    c.gelu_approx = gguf_gelu_approx(f);
    c.qkv_fused = true;
    c.qkv_bias = c.attn_out_bias = c.ffn_bias = true;  // llama.cpp requires them
    c.attn_scale = gguf_attention_scale(f, 0);
    return c;
  }

  // GPT2Model.set_gguf_parameters. Its context is n_ctx, which old configs carry beside
  // n_positions (the same number); newer ones have only n_positions.
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    k.u32("block_count", c.n_layers);
    k.u32("context_length", c.max_seq_len);
    k.u32("embedding_length", c.dim);
    k.u32("feed_forward_length", c.hidden_dim);
    k.u32("attention.head_count", c.n_heads);
    k.f32("attention.layer_norm_epsilon", c.norm_eps);
    k.file_type();
    gguf_write_attention_scale(k, c, 1.0 / std::sqrt(double(c.head_dim)));
    gguf_write_gelu(k, c);
  }
  std::vector<std::string_view> hf_model_types() const override { return {"gpt2"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c;
    c.dim = h.integer("n_embd", 768);
    c.n_layers = h.integer("n_layer", 12, 4096);
    c.n_heads = c.n_kv_heads = h.integer("n_head", 12, 65536);
    c.vocab_size = h.integer("vocab_size", 50257, 1 << 24);
    c.max_seq_len = h.integer("n_positions", 1024, 1 << 24);
    c.hidden_dim = h.integer("n_inner", 4 * c.dim);
    if (c.dim % c.n_heads != 0) h.fail("n_embd is not divisible by n_head");
    c.head_dim = c.dim / c.n_heads;
    c.shared_classifier = h.flag("tie_word_embeddings", true);
    h.require_flag("scale_attn_by_inverse_layer_idx", false,
                   "scaling attention by the inverse layer index is not implemented");
    h.require_flag("add_cross_attention", false, "cross-attention is not a decoder-only model");
    if (!h.flag("scale_attn_weights", true)) c.attn_scale = 1.0;
    c.rope = false;
    c.learned_positions = true;
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = float(h.number("layer_norm_epsilon", 1e-5));
    c.ffn = FfnKind::Gelu;
    c.gelu_approx = hf_gelu_approx(h, "activation_function");
    c.qkv_fused = true;
    c.qkv_bias = c.attn_out_bias = c.ffn_bias = true;
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    std::map<std::string, Tensor> out;
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      const std::string t = "transformer.h." + std::to_string(l) + ".";
      for (auto [gguf, hf] : {std::pair{"attn_qkv", "attn.c_attn"},
                              {"attn_output", "attn.c_proj"},
                              {"ffn_up", "mlp.c_fc"},
                              {"ffn_down", "mlp.c_proj"}})
        out[b + gguf + ".weight"] = w.take_transposed(t + hf + ".weight");
    }
    const std::string L = "transformer.h.{}.";
    HfNames n{{"token_embd.weight", "transformer.wte.weight"},
              {"position_embd.weight", "transformer.wpe.weight"},
              {"output_norm.weight", "transformer.ln_f.weight"},
              {"output_norm.bias", "transformer.ln_f.bias"},
              {"output.weight", "lm_head.weight"}};
    for (auto [gguf, hf] : {std::pair{"attn_norm", "ln_1"},
                            {"ffn_norm", "ln_2"},
                            {"attn_qkv", "attn.c_attn"},
                            {"attn_output", "attn.c_proj"},
                            {"ffn_up", "mlp.c_fc"},
                            {"ffn_down", "mlp.c_proj"}}) {
      n[std::string(gguf) + ".weight"] = L + hf + ".weight";
      n[std::string(gguf) + ".bias"] = L + hf + ".bias";
    }
    // Old checkpoints carry the causal mask as buffers.
    return load_hf(c, h, w, n, std::move(out), 0, {".attn.bias", ".attn.masked_bias"});
  }
};

}  // namespace

const Architecture& gpt2_architecture() {
  static const Gpt2 family;
  return family;
}

}  // namespace tapml

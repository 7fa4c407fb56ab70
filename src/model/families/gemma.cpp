// Gemma: GeGLU with the tanh GELU, norms that multiply by (1 + w), embeddings scaled by
// sqrt(hidden_size), and a head_dim of its own.
#include <cmath>

#include "model/families/families.h"

namespace tapml {

ModelConfig gemma_config(const HfConfig& h) {
  ModelConfig c = hf_common_config(h, true);
  c.hidden_dim = h.integer("intermediate_size", std::nullopt);
  if (!h.has("head_dim")) c.head_dim = c.rope_dim = 256;  // Gemma's default, not hidden/heads
  c.ffn = FfnKind::GeGlu;
  c.gelu_approx =
      hf_gelu_approx(h, h.has("hidden_activation") ? "hidden_activation" : "hidden_act");
  c.norm_eps = float(h.number("rms_norm_eps", 1e-6));
  c.qkv_bias = c.attn_out_bias = h.flag("attention_bias", false);
  c.embed_scale = std::sqrt(double(c.dim));
  hf_apply_rope(c, h.rope(10000));
  c.rope_pairing = RopePairing::NeoX;
  return c;
}

void gemma_windows(ModelConfig& c, const HfConfig& h, int pattern) {
  int w = h.count("sliding_window", 4096);
  std::vector<std::string> types = h.layer_types(c.n_layers);
  c.layer_window.assign(size_t(c.n_layers), 0);
  for (int l = 0; l < c.n_layers; ++l) {
    bool sliding = types.empty() ? (l + 1) % pattern != 0 : types[size_t(l)] == "sliding_attention";
    if (sliding) c.layer_window[size_t(l)] = w;
  }
}

HfNames gemma2_hf_names() {
  HfNames n = llama_hf_names();
  n["post_attention_norm.weight"] = "model.layers.{}.post_attention_layernorm.weight";
  n["ffn_norm.weight"] = "model.layers.{}.pre_feedforward_layernorm.weight";
  n["post_ffw_norm.weight"] = "model.layers.{}.post_feedforward_layernorm.weight";
  return n;
}

ModelConfig gemma_gguf_config(const gguf::File& f, const std::string& arch) {
  ModelConfig c = gguf_common_config(f, arch);
  c.norm_eps = gguf_rms_eps(f, arch);
  c.ffn = FfnKind::GeGlu;
  c.gelu_approx = gguf_gelu_approx(f);
  c.embed_scale = std::sqrt(double(c.dim));
  c.rope_pairing = RopePairing::NeoX;
  return c;
}

// GemmaModel.set_gguf_parameters (Gemma 2's begins the same way).
void gemma_gguf_keys(GgufKeys& k, const ModelConfig& c, const HfConfig& h) {
  k.u32("context_length", c.max_seq_len);
  k.u32("embedding_length", c.dim);
  k.u32("block_count", c.n_layers);
  k.u32("feed_forward_length", c.hidden_dim);
  k.u32("attention.head_count", c.n_heads);
  k.u32("attention.head_count_kv", c.n_kv_heads);
  k.f32("attention.layer_norm_rms_epsilon", c.norm_eps);
  k.u32("attention.key_length", c.head_dim);
  k.u32("attention.value_length", c.head_dim);
  k.file_type();
  // The converter writes no RoPE base: llama.cpp's default is Gemma's 10000. Another base is
  // written all the same, or llama.cpp would run it wrong.
  if (c.rope_base != 10000.0f) k.f32("rope.freq_base", c.rope_base);
  // llama.cpp's gemma and gemma2 take the classifier from token_embd and refuse output.weight.
  if (!c.shared_classifier && k.arch() != "gemma3")
    k.note("llama.cpp's " + k.arch() +
           " will refuse this file: it ties the classifier to token_embd and has no place for "
           "output.weight, which this folder's own lm_head needs");
  gguf_write_gelu(k, c);
}

double gemma_llama_cpp_scale(const ModelConfig& c, int layers_27b) {
  return c.n_layers == layers_27b ? 1.0 / std::sqrt(double(c.dim / c.n_heads))
                                  : 1.0 / std::sqrt(double(c.head_dim));
}

namespace {

class Gemma final : public Decoder {
 public:
  std::string_view name() const override { return "gemma"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    return gemma_gguf_config(f, "gemma");
  }

  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    gemma_gguf_keys(k, c, h);
  }
  std::vector<std::string_view> hf_model_types() const override { return {"gemma"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = gemma_config(h);
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    return load_hf(c, h, w, llama_hf_names(), {}, 1.0f);
  }
};

}  // namespace

const Architecture& gemma_architecture() {
  static const Gemma family;
  return family;
}

}  // namespace tapml

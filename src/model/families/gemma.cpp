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

namespace {

class Gemma final : public Decoder {
 public:
  std::string_view name() const override { return "gemma"; }
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

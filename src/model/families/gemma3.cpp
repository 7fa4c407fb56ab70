// Gemma 3 (text): Gemma 2 without soft-capping by default, RMSNorms over each head of q and
// k, and separate RoPE bases for the sliding (local) and full (global) layers.
#include <cmath>

#include "model/families/families.h"

namespace tapml {

namespace {

class Gemma3 final : public Decoder {
 public:
  std::string_view name() const override { return "gemma3"; }
  std::vector<std::string_view> hf_model_types() const override {
    return {"gemma3_text", "gemma3"};
  }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = gemma_config(h);
    c.post_norms = true;
    c.qk_norm = QkNorm::PerHead;
    c.attn_softcap = h.number("attn_logit_softcapping", 0.0);
    c.final_softcap = h.number("final_logit_softcapping", 0.0);
    c.attn_scale = 1.0 / std::sqrt(h.number("query_pre_attn_scalar", 256));
    gemma_windows(c, h,
                  h.integer("sliding_window_pattern", h.integer("_sliding_window_pattern", 6)));
    // Global layers: rope_parameters.full_attention (or rope_theta); local layers:
    // rope_parameters.sliding_attention (or rope_local_base_freq).
    HfConfig::Rope global = h.rope(1000000, "full_attention");
    HfConfig::Rope local =
        h.has("rope_parameters") ? h.rope(10000, "sliding_attention") : HfConfig::Rope{};
    if (!h.has("rope_parameters")) local.theta = h.number("rope_local_base_freq", 10000);
    if (global.type != "default" || local.type != "default")
      h.fail("RoPE scaling on Gemma 3 layers is not supported yet (rope_type " + global.type +
             " / " + local.type + ")");
    c.rope_base = float(global.theta);
    c.layer_rope_base.assign(size_t(c.n_layers), float(global.theta));
    for (int l = 0; l < c.n_layers; ++l)
      if (c.window(l) > 0) c.layer_rope_base[size_t(l)] = float(local.theta);
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    return load_hf(c, h, w, gemma2_hf_names(), {}, 1.0f);
  }
};

}  // namespace

const Architecture& gemma3_architecture() {
  static const Gemma3 family;
  return family;
}

}  // namespace tapml

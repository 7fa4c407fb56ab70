// Gemma 3 (text): Gemma 2 without soft-capping by default, RMSNorms over each head of q and
// k, and separate RoPE bases for the sliding (local) and full (global) layers.
#include <algorithm>
#include <cmath>

#include "model/families/families.h"

namespace tapml {

namespace {

class Gemma3 final : public Decoder {
 public:
  std::string_view name() const override { return "gemma3"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    const std::string a = "gemma3";
    ModelConfig c = gemma_gguf_config(f, a);
    c.post_norms = true;
    c.qk_norm = QkNorm::PerHead;
    c.final_softcap = f.get_float_or(a + ".final_logit_softcapping", 0.0);
    // llama.cpp: windows only with a sliding_window key, on 5 layers of every 6 by default,
    // whose RoPE base is rope.freq_base_swa (10000 by default).
    int window = int(f.get_uint_or(a + ".attention.sliding_window", 0));
    gguf_periodic_windows(c, f, a, window, 6);
    float local = float(f.get_float_or(a + ".rope.freq_base_swa", 10000.0));
    c.layer_rope_base.assign(size_t(c.n_layers), c.rope_base);
    for (int l = 0; l < c.n_layers; ++l)
      if (c.window(l) > 0) c.layer_rope_base[size_t(l)] = local;
    c.attn_scale = gguf_attention_scale(f, gemma_llama_cpp_scale(c, 62));
    return c;
  }

  // Gemma3Model.set_gguf_parameters: TextModel's keys, then Gemma 3's own over them.
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    if (c.attn_softcap > 0)
      h.fail(
          "attn_logit_softcapping cannot be converted: llama.cpp's gemma3 has no attention "
          "soft-cap (its converter refuses it too)");
    gguf_text_model_keys(k, c, h);
    k.u32("context_length", c.max_seq_len);
    k.u32("attention.head_count", c.n_heads);
    k.f32("attention.layer_norm_rms_epsilon", c.norm_eps);
    k.u32("attention.key_length", c.head_dim);
    k.u32("attention.value_length", c.head_dim);
    k.f32("rope.freq_base", c.rope_base);
    if (c.final_softcap > 0) k.f32("final_logit_softcapping", c.final_softcap);
    int window = 0;
    for (int l = 0; l < c.n_layers; ++l) window = std::max(window, c.window(l));
    if (window > 0) k.u32("attention.sliding_window", window);
    k.u32("attention.head_count_kv", c.n_kv_heads);
    if (window > 0) gguf_write_window_period(k, c, 6);
    gguf_write_attention_scale(k, c, gemma_llama_cpp_scale(c, 62));
    gguf_write_gelu(k, c);
  }
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

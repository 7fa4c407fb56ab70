// Gemma 2: Gemma with soft-capped attention scores and logits, sliding windows on alternate
// layers, a query scale of its own, and norms after attention and the MLP as well as before.
#include <algorithm>
#include <cmath>

#include "model/families/families.h"

namespace tapml {

namespace {

class Gemma2 final : public Decoder {
 public:
  std::string_view name() const override { return "gemma2"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    const std::string a = "gemma2";
    ModelConfig c = gemma_gguf_config(f, a);
    c.post_norms = true;
    // llama.cpp's defaults: Gemma 2's caps, a window of 4096 on every other layer.
    c.attn_softcap = f.get_float_or(a + ".attn_logit_softcapping", 50.0);
    c.final_softcap = f.get_float_or(a + ".final_logit_softcapping", 30.0);
    int window = int(f.get_uint_or(a + ".attention.sliding_window", 4096));
    gguf_periodic_windows(c, f, a, window, 2);
    float local = float(f.get_float_or(a + ".rope.freq_base_swa", c.rope_base));
    if (local != c.rope_base) {
      c.layer_rope_base.assign(size_t(c.n_layers), c.rope_base);
      for (int l = 0; l < c.n_layers; ++l)
        if (c.window(l) > 0) c.layer_rope_base[size_t(l)] = local;
    }
    c.attn_scale = gguf_attention_scale(f, gemma_llama_cpp_scale(c, 46));
    return c;
  }

  // Gemma2Model.set_gguf_parameters: Gemma's keys, the caps and the window.
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    gemma_gguf_keys(k, c, h);
    k.f32("attn_logit_softcapping", c.attn_softcap);
    k.f32("final_logit_softcapping", c.final_softcap);
    int window = 0;
    for (int l = 0; l < c.n_layers; ++l) window = std::max(window, c.window(l));
    k.u32("attention.sliding_window", window);
    gguf_write_window_period(k, c, 2);
    gguf_write_attention_scale(k, c, gemma_llama_cpp_scale(c, 46));
  }
  std::vector<std::string_view> hf_model_types() const override { return {"gemma2"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = gemma_config(h);
    c.post_norms = true;
    c.attn_softcap = h.number("attn_logit_softcapping", 50.0);
    c.final_softcap = h.number("final_logit_softcapping", 30.0);
    c.attn_scale = 1.0 / std::sqrt(h.number("query_pre_attn_scalar", 256));
    gemma_windows(c, h, 2);
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    return load_hf(c, h, w, gemma2_hf_names(), {}, 1.0f);
  }
};

}  // namespace

const Architecture& gemma2_architecture() {
  static const Gemma2 family;
  return family;
}

}  // namespace tapml

// StarCoder2: LayerNorms with biases, biases on every projection, a GELU MLP, and a sliding
// window on every layer.
#include "model/families/families.h"

namespace tapml {

namespace {

class Starcoder2 final : public Decoder {
 public:
  std::string_view name() const override { return "starcoder2"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c = gguf_common_config(f, "starcoder2");
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = gguf_layer_norm_eps(f, "starcoder2");
    c.ffn = FfnKind::Gelu;
    c.gelu_approx = gguf_gelu_approx(f);
    c.rope_pairing = RopePairing::NeoX;
    gguf_tapml_windows(c, f);  // llama.cpp has no window for StarCoder2
    return c;
  }

  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    gguf_text_model_keys(k, c, h);
    gguf_write_tapml_windows(k, c);
    gguf_write_gelu(k, c);
  }
  std::vector<std::string_view> hf_model_types() const override { return {"starcoder2"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_common_config(h, true);
    c.hidden_dim = h.integer("intermediate_size", std::nullopt);
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = float(h.number("norm_epsilon", 1e-5));
    c.ffn = FfnKind::Gelu;
    c.gelu_approx = hf_gelu_approx(h, "hidden_act");
    c.qkv_bias = c.attn_out_bias = c.ffn_bias = h.flag("use_bias", true);
    hf_apply_rope(c, h.rope(10000));
    c.rope_pairing = RopePairing::NeoX;
    hf_windows(c, h, true);
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    HfNames n = llama_hf_names();
    n["ffn_up.weight"] = "model.layers.{}.mlp.c_fc.weight";
    n["ffn_up.bias"] = "model.layers.{}.mlp.c_fc.bias";
    n["ffn_down.weight"] = "model.layers.{}.mlp.c_proj.weight";
    n["ffn_down.bias"] = "model.layers.{}.mlp.c_proj.bias";
    return load_hf(c, h, w, n);
  }
};

}  // namespace

const Architecture& starcoder2_architecture() {
  static const Starcoder2 family;
  return family;
}

}  // namespace tapml

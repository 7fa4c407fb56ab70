// Phi-3: Llama with fused q/k/v and gate/up projections (one weight each).
#include "model/families/families.h"

namespace tapml {

namespace {

class Phi3 final : public Decoder {
 public:
  std::string_view name() const override { return "phi3"; }
  std::vector<std::string_view> hf_model_types() const override { return {"phi3"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, false, "rms_norm_eps", 1e-5, 10000);
    c.qkv_fused = true;
    c.gate_up_fused = true;
    hf_windows(c, h, true);
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    HfNames n = llama_hf_names();
    n["attn_qkv.weight"] = "model.layers.{}.self_attn.qkv_proj.weight";
    n["attn_qkv.bias"] = "model.layers.{}.self_attn.qkv_proj.bias";
    n["ffn_up.weight"] = "model.layers.{}.mlp.gate_up_proj.weight";
    n["ffn_up.bias"] = "model.layers.{}.mlp.gate_up_proj.bias";
    return load_hf(c, h, w, n);
  }
};

}  // namespace

const Architecture& phi3_architecture() {
  static const Phi3 family;
  return family;
}

}  // namespace tapml

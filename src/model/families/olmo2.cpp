// OLMo 2: no norms before attention or the MLP, RMSNorms after each (before the residual
// add), and RMSNorms over the whole q and k projections.
#include "core/error.h"
#include "model/families/families.h"

namespace tapml {

namespace {

class Olmo2 final : public Decoder {
 public:
  std::string_view name() const override { return "olmo2"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c = gguf_common_config(f, "olmo2");
    if (f.get_uint_or("olmo2.attention.sliding_window", 0) > 0)
      throw Error(f.path() + ": OLMo's sliding windows are not implemented");
    c.norm_eps = gguf_rms_eps(f, "olmo2");
    c.pre_norms = false;
    c.post_norms = true;
    c.qk_norm = QkNorm::Whole;
    c.rope_pairing = RopePairing::NeoX;
    return c;
  }

  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    gguf_text_model_keys(k, c, h);
  }
  std::vector<std::string_view> hf_model_types() const override { return {"olmo2"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, false, "rms_norm_eps", 1e-5, 10000);
    c.pre_norms = false;
    c.post_norms = true;
    c.qk_norm = QkNorm::Whole;
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    HfNames n = llama_hf_names();
    n["post_attention_norm.weight"] = "model.layers.{}.post_attention_layernorm.weight";
    n["post_ffw_norm.weight"] = "model.layers.{}.post_feedforward_layernorm.weight";
    return load_hf(c, h, w, n);
  }
};

}  // namespace

const Architecture& olmo2_architecture() {
  static const Olmo2 family;
  return family;
}

}  // namespace tapml

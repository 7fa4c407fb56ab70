// Granite: Llama with four multipliers: on the embeddings, on each residual branch, as the
// attention scale, and a divisor of the logits.
#include "model/families/families.h"

namespace tapml {

namespace {

class Granite final : public Decoder {
 public:
  std::string_view name() const override { return "granite"; }
  std::vector<std::string_view> hf_model_types() const override { return {"granite"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, true, "rms_norm_eps", 1e-6, 10000);
    c.embed_scale = h.number("embedding_multiplier", 1.0);
    c.residual_scale = h.number("residual_multiplier", 1.0);
    c.attn_scale = h.number("attention_multiplier", 1.0);
    double logits_scaling = h.number("logits_scaling", 1.0);
    if (logits_scaling == 0) h.fail("'logits_scaling' must not be 0");
    c.logit_scale = 1.0 / logits_scaling;
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    return load_hf(c, h, w, llama_hf_names());
  }
};

}  // namespace

const Architecture& granite_architecture() {
  static const Granite family;
  return family;
}

}  // namespace tapml

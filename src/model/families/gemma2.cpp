// Gemma 2: Gemma with soft-capped attention scores and logits, sliding windows on alternate
// layers, a query scale of its own, and norms after attention and the MLP as well as before.
#include <cmath>

#include "model/families/families.h"

namespace tapml {

namespace {

class Gemma2 final : public Decoder {
 public:
  std::string_view name() const override { return "gemma2"; }
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

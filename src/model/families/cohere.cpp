// Cohere (Command-R): one LayerNorm without bias feeding attention and the MLP in parallel,
// RoPE on interleaved pairs, and scaled logits.
#include "model/families/families.h"

namespace tapml {

namespace {

class Cohere final : public Decoder {
 public:
  std::string_view name() const override { return "cohere"; }
  std::vector<std::string_view> hf_model_types() const override { return {"cohere"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, true, "layer_norm_eps", 1e-5, 10000);
    h.require_flag("use_qk_norm", false,
                   "the per-head q/k LayerNorms of Cohere are not implemented");
    c.norm = NormKind::Layer;
    c.norm_bias = false;
    c.block = BlockKind::Parallel;
    c.logit_scale = h.number("logit_scale", 0.0625);
    c.rope_pairing = RopePairing::Adjacent;  // repeat_interleave: pairs (2i, 2i+1)
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    return load_hf(c, h, w, llama_hf_names());
  }
};

}  // namespace

const Architecture& cohere_architecture() {
  static const Cohere family;
  return family;
}

}  // namespace tapml

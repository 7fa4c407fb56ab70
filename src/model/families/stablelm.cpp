// StableLM: LayerNorms with biases, partial rotary embeddings, optional q/k/v biases and an
// optional parallel block.
#include "model/families/families.h"

namespace tapml {

namespace {

class StableLm final : public Decoder {
 public:
  std::string_view name() const override { return "stablelm"; }
  std::vector<std::string_view> hf_model_types() const override { return {"stablelm"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_common_config(h, false);
    c.hidden_dim = h.integer("intermediate_size", std::nullopt);
    hf_require_silu(h, "hidden_act");
    h.require_flag("qk_layernorm", false,
                   "the per-head q/k LayerNorms of StableLM are not implemented");
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = float(h.number("layer_norm_eps", 1e-5));
    c.qkv_bias = h.flag("use_qkv_bias", false);
    if (h.flag("use_parallel_residual", false)) c.block = BlockKind::Parallel;
    HfConfig::Rope rope = h.rope(10000);
    if (!rope.partial_rotary_factor)
      rope.partial_rotary_factor = h.number("partial_rotary_factor", 0.25);
    hf_apply_rope(c, rope);
    c.rope_pairing = RopePairing::NeoX;
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    return load_hf(c, h, w, llama_hf_names());
  }
};

}  // namespace

const Architecture& stablelm_architecture() {
  static const StableLm family;
  return family;
}

}  // namespace tapml

// Qwen2: Llama with biases on the q, k and v projections.
#include "model/families/families.h"

namespace tapml {

namespace {

class Qwen2 final : public Decoder {
 public:
  std::string_view name() const override { return "qwen2"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c = gguf_common_config(f, "qwen2");
    c.norm_eps = gguf_rms_eps(f, "qwen2");
    c.rope_pairing = RopePairing::NeoX;
    return c;
  }

  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    gguf_text_model_keys(k, c, h);
  }
  std::vector<std::string_view> hf_model_types() const override { return {"qwen2"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, false, "rms_norm_eps", 1e-6, 10000);
    h.require_flag("use_sliding_window", false,
                   "Qwen2's sliding window (on the layers past max_window_layers) is not "
                   "implemented");
    c.qkv_bias = true;  // always, whatever attention_bias says
    c.attn_out_bias = false;
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    return load_hf(c, h, w, llama_hf_names());
  }
};

}  // namespace

const Architecture& qwen2_architecture() {
  static const Qwen2 family;
  return family;
}

}  // namespace tapml

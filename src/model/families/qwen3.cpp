// Qwen3: Llama with an RMSNorm over each head of q and k before RoPE, and a head_dim of its
// own.
#include "model/families/families.h"

namespace tapml {

namespace {

class Qwen3 final : public Decoder {
 public:
  std::string_view name() const override { return "qwen3"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c = gguf_common_config(f, "qwen3");
    c.norm_eps = gguf_rms_eps(f, "qwen3");
    c.rope_pairing = RopePairing::NeoX;
    c.qk_norm = QkNorm::PerHead;
    return c;
  }

  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    gguf_text_model_keys(k, c, h);
  }
  std::vector<std::string_view> hf_model_types() const override { return {"qwen3"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, false, "rms_norm_eps", 1e-6, 10000);
    h.require_flag("use_sliding_window", false, "Qwen3's sliding window is not implemented");
    c.attn_out_bias = false;
    c.qk_norm = QkNorm::PerHead;
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    return load_hf(c, h, w, llama_hf_names());
  }
};

}  // namespace

const Architecture& qwen3_architecture() {
  static const Qwen3 family;
  return family;
}

}  // namespace tapml

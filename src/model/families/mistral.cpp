// Mistral: Llama with a sliding attention window on every layer.
#include "model/families/families.h"

namespace tapml {

namespace {

class Mistral final : public Decoder {
 public:
  std::string_view name() const override { return "mistral"; }
  // llama.cpp runs it as Llama: its converter writes general.architecture = llama.
  std::string_view gguf_architecture() const override { return "llama"; }
  RopePairing gguf_rope_pairing() const override { return RopePairing::Adjacent; }
  ModelConfig config_from_gguf(const gguf::File& f) const override {
    return llama_gguf_config(f, "mistral");
  }
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    llama_gguf_metadata(k, c, h);
  }
  std::vector<std::string_view> hf_model_types() const override { return {"mistral"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, false, "rms_norm_eps", 1e-6, 10000);
    hf_windows(c, h, true);
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    return load_hf(c, h, w, llama_hf_names());
  }
};

}  // namespace

const Architecture& mistral_architecture() {
  static const Mistral family;
  return family;
}

}  // namespace tapml

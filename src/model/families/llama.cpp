// Llama (1, 2, 3, 3.1 with its RoPE frequency scaling), from GGUF and from transformers'
// LlamaForCausalLM folders; also llama2.c checkpoints, which the llama2c reader maps here.
// llama.cpp runs Mistral and Mixtral as this architecture too (llama_gguf_config).
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"
#include "model/families/families.h"

namespace tapml {

ModelConfig llama_gguf_config(const gguf::File& f, const std::string& arch) {
  ModelConfig c = gguf_common_config(f, arch);
  c.norm_eps = gguf_rms_eps(f, arch);
  c.rope_pairing = RopePairing::Adjacent;  // llama.cpp's converter permutes q/k to match
  c.rope_freqs = f.find_tensor("rope_freqs.weight") != nullptr;
  c.qkv_fused = gguf_block_has(f, "attn_qkv.weight");
  if (c.n_experts > 0) {
    c.ffn = FfnKind::Moe;
    c.experts_norm = true;  // llama.cpp's Llama renormalizes the chosen experts' weights
    c.expert_hidden_dim = c.hidden_dim;
  }
  gguf_tapml_windows(c, f);
  return c;
}

void llama_gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) {
  if (c.rope_dim != c.head_dim)
    h.fail("partial rotary embeddings cannot be converted: llama.cpp's llama rotates whole heads");
  gguf_text_model_keys(k, c, h);
  k.u32("vocab_size", c.vocab_size);
  k.u32("rope.dimension_count", c.head_dim);
  gguf_write_tapml_windows(k, c);
}

namespace {

class Llama final : public Decoder {
 public:
  std::string_view name() const override { return "llama"; }
  RopePairing gguf_rope_pairing() const override { return RopePairing::Adjacent; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    return llama_gguf_config(f, "llama");
  }

  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    llama_gguf_metadata(k, c, h);
  }

  std::vector<std::string_view> hf_model_types() const override { return {"llama"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, false, "rms_norm_eps", 1e-6, 10000);
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    return load_hf(c, h, w, llama_hf_names());
  }
};

}  // namespace

const Architecture& llama_architecture() {
  static const Llama llama;
  return llama;
}

}  // namespace tapml

// Mixtral: Llama whose MLP is a mixture of experts: a router picks the top k of n SwiGLU
// experts per token and weights their outputs by its renormalized softmax.
#include "model/families/families.h"

namespace tapml {

namespace {

class Mixtral final : public Decoder {
 public:
  std::string_view name() const override { return "mixtral"; }
  // llama.cpp runs it as Llama: its converter writes general.architecture = llama.
  std::string_view gguf_architecture() const override { return "llama"; }
  RopePairing gguf_rope_pairing() const override { return RopePairing::Adjacent; }
  ModelConfig config_from_gguf(const gguf::File& f) const override {
    return llama_gguf_config(f, "mixtral");
  }
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    llama_gguf_metadata(k, c, h);
  }
  std::vector<std::string_view> hf_model_types() const override { return {"mixtral"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, false, "rms_norm_eps", 1e-5, 1000000);
    c.ffn = FfnKind::Moe;
    c.n_experts = h.integer("num_local_experts", 8, 4096);
    c.n_experts_used = h.integer("num_experts_per_tok", 2, 4096);
    c.experts_norm = true;
    c.expert_hidden_dim = c.hidden_dim;
    hf_windows(c, h, true);
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    std::map<std::string, Tensor> out;
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      const std::string m = "model.layers." + std::to_string(l) + ".block_sparse_moe.";
      out[b + "ffn_gate_inp.weight"] = w.take(m + "gate.weight");
      hf_stack_experts(c, w, l, m, "w1", "w3", "w2", out);
    }
    return load_hf(c, h, w, llama_hf_names(), std::move(out));
  }
};

}  // namespace

const Architecture& mixtral_architecture() {
  static const Mixtral family;
  return family;
}

}  // namespace tapml

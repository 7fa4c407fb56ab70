// Llama (1, 2, 3, 3.1 with its RoPE frequency scaling), from GGUF and from transformers'
// LlamaForCausalLM folders; also llama2.c checkpoints, which the llama2c reader maps here.
#include "model/families/families.h"

#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"

namespace tapml {

namespace {

class Llama final : public Decoder {
 public:
  std::string_view name() const override { return "llama"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c;
    c.dim = gguf_hyperparameter(f, "llama.embedding_length", std::nullopt);
    c.hidden_dim = gguf_hyperparameter(f, "llama.feed_forward_length", std::nullopt);
    c.n_layers = gguf_hyperparameter(f, "llama.block_count", std::nullopt);
    c.n_heads = gguf_hyperparameter(f, "llama.attention.head_count", std::nullopt);
    c.n_kv_heads = gguf_hyperparameter(f, "llama.attention.head_count_kv", uint64_t(c.n_heads));
    c.max_seq_len = gguf_hyperparameter(f, "llama.context_length", std::nullopt,
                                        uint64_t(std::numeric_limits<int>::max()));
    std::optional<uint64_t> even_split;
    if (c.dim % c.n_heads == 0) even_split = uint64_t(c.dim / c.n_heads);
    if (!even_split && !f.has("llama.attention.key_length"))
      throw Error(f.path() + ": llama.embedding_length " + std::to_string(c.dim) +
                  " is not divisible by llama.attention.head_count " + std::to_string(c.n_heads) +
                  " and llama.attention.key_length is missing");
    c.head_dim = gguf_hyperparameter(f, "llama.attention.key_length", even_split);
    c.rope_dim = gguf_hyperparameter(f, "llama.rope.dimension_count", uint64_t(c.head_dim));
    c.rope_base = float(f.get_float_or("llama.rope.freq_base", 10000.0));
    c.norm_eps = float(f.get_float_or("llama.attention.layer_norm_rms_epsilon", 1e-5));
    c.rope_pairing = RopePairing::Adjacent;  // llama.cpp's converter permutes q/k to match

    if (f.has("llama.vocab_size")) {
      c.vocab_size = gguf_hyperparameter(f, "llama.vocab_size", std::nullopt);
    } else if (const gguf::TensorInfo* e = f.find_tensor("token_embd.weight");
               e && e->ne.size() == 2) {
      if (e->ne[1] > (uint64_t(1) << 20))
        throw Error(f.path() + ": token_embd.weight has " + std::to_string(e->ne[1]) +
                    " rows, an absurd vocabulary size");
      c.vocab_size = int(e->ne[1]);
    } else {
      throw Error(f.path() + ": cannot tell the vocabulary size (no llama.vocab_size and no " +
                  "2-D token_embd.weight)");
    }
    c.shared_classifier = f.find_tensor("output.weight") == nullptr;
    c.rope_freqs = f.find_tensor("rope_freqs.weight") != nullptr;
    return c;
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

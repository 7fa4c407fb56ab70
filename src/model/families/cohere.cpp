// Cohere (Command-R): one LayerNorm without bias feeding attention and the MLP in parallel,
// RoPE on interleaved pairs, and scaled logits.
#include "core/error.h"
#include "model/families/families.h"

namespace tapml {

namespace {

class Cohere final : public Decoder {
 public:
  // As llama.cpp names the architecture.
  std::string_view name() const override { return "command-r"; }
  RopePairing gguf_rope_pairing() const override { return RopePairing::Adjacent; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    const std::string a = "command-r";
    ModelConfig c = gguf_common_config(f, a);
    if (gguf_block_has(f, "attn_q_norm.weight"))
      throw Error(f.path() + ": the per-head q/k LayerNorms of Cohere are not implemented");
    c.norm = NormKind::Layer;
    c.norm_bias = false;
    c.norm_eps = gguf_layer_norm_eps(f, a);
    c.block = BlockKind::Parallel;
    c.logit_scale = f.get_float_or(a + ".logit_scale", 0.0);
    c.rope_pairing = RopePairing::Adjacent;
    return c;
  }

  // CommandR2Model.set_gguf_parameters: TextModel's keys, the logit scale, no RoPE scaling.
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    gguf_text_model_keys(k, c, h);
    k.f32("logit_scale", c.logit_scale);
    k.text("rope.scaling.type", "none");
    if (!c.shared_classifier)
      k.note(
          "llama.cpp's command-r will refuse this file: it ties the classifier to token_embd "
          "and has no place for output.weight, which this folder's own lm_head needs");
  }
  std::vector<std::string_view> hf_model_types() const override { return {"cohere"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, true, "layer_norm_eps", 1e-5, 10000);
    // The trained context (Command-R's max_position_embeddings says 8192 for 128k).
    c.max_seq_len = h.integer("model_max_length", c.max_seq_len, 1 << 24);
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

// Granite: Llama with four multipliers: on the embeddings, on each residual branch, as the
// attention scale, and a divisor of the logits.
#include <cmath>

#include "core/error.h"
#include "model/families/families.h"

namespace tapml {

namespace {

class Granite final : public Decoder {
 public:
  std::string_view name() const override { return "granite"; }
  RopePairing gguf_rope_pairing() const override { return RopePairing::Adjacent; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c = llama_gguf_config(f, "granite");
    double logit_scale = f.get_float("granite.logit_scale");  // llama.cpp requires it
    if (!(std::isfinite(logit_scale) && logit_scale != 0))
      throw Error(f.path() + ": granite.logit_scale must be a nonzero number");
    c.logit_scale = 1.0 / logit_scale;  // llama.cpp divides the logits by it
    c.residual_scale = f.get_float_or("granite.residual_scale", 0);
    c.embed_scale = f.get_float_or("granite.embedding_scale", 0);
    c.attn_scale = f.get_float_or("granite.attention.scale", 0);
    return c;
  }

  // GraniteModel: Llama's keys without head_dim (llama.cpp takes hidden/heads), plus the four
  // multipliers (logits_scaling as logit_scale, a divisor).
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    if (c.head_dim * c.n_heads != c.dim)
      h.fail("head_dim " + std::to_string(c.head_dim) +
             " cannot be converted: llama.cpp's granite takes hidden_size / num_attention_heads");
    if (c.rope_dim != c.head_dim)
      h.fail("partial rotary embeddings cannot be converted: llama.cpp rotates whole heads");
    gguf_text_model_keys(k, c, h, false);
    k.u32("vocab_size", c.vocab_size);
    k.u32("rope.dimension_count", c.head_dim);
    if (c.attn_scale != 0) k.f32("attention.scale", c.attn_scale);
    if (c.embed_scale != 0) k.f32("embedding_scale", c.embed_scale);
    if (c.residual_scale != 0) k.f32("residual_scale", c.residual_scale);
    if (c.logit_scale != 0) k.f32("logit_scale", 1.0 / c.logit_scale);
  }
  std::vector<std::string_view> hf_model_types() const override { return {"granite"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, true, "rms_norm_eps", 1e-6, 10000);
    c.embed_scale = h.number("embedding_multiplier", 1.0);
    c.residual_scale = h.number("residual_multiplier", 1.0);
    c.attn_scale = h.number("attention_multiplier", 1.0);
    double logits_scaling = h.number("logits_scaling", 1.0);
    if (logits_scaling == 0) h.fail("'logits_scaling' must not be 0");
    c.logit_scale = 1.0 / logits_scaling;
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    return load_hf(c, h, w, llama_hf_names());
  }
};

}  // namespace

const Architecture& granite_architecture() {
  static const Granite family;
  return family;
}

}  // namespace tapml

// StableLM: LayerNorms with biases, partial rotary embeddings, optional q/k/v biases and an
// optional parallel block.
#include "core/error.h"
#include "model/families/families.h"

namespace tapml {

namespace {

class StableLm final : public Decoder {
 public:
  std::string_view name() const override { return "stablelm"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c = gguf_common_config(f, "stablelm");
    if (gguf_block_has(f, "attn_q_norm.weight"))
      throw Error(f.path() + ": the per-head q/k LayerNorms of StableLM are not implemented");
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = gguf_layer_norm_eps(f, "stablelm");
    // llama.cpp: a block without ffn_norm runs attention and the MLP in parallel.
    if (!gguf_block_has(f, "ffn_norm.weight")) c.block = BlockKind::Parallel;
    c.rope_pairing = RopePairing::NeoX;
    return c;
  }

  // StableLMModel.set_gguf_parameters.
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    k.u32("context_length", c.max_seq_len);
    k.u32("embedding_length", c.dim);
    k.u32("block_count", c.n_layers);
    k.u32("feed_forward_length", c.hidden_dim);
    k.u32("rope.dimension_count", c.rope_dim);
    k.u32("attention.head_count", c.n_heads);
    k.u32("attention.head_count_kv", c.n_kv_heads);
    k.flag("use_parallel_residual", c.block == BlockKind::Parallel);
    k.f32("attention.layer_norm_epsilon", c.norm_eps);
    k.file_type();
  }
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

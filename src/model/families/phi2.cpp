// Phi (phi-1, phi-1.5, phi-2): one LayerNorm feeding attention and the MLP in parallel, partial
// rotary embeddings, a GELU MLP, and biases everywhere, the classifier included.
#include "model/families/families.h"

namespace tapml {

namespace {

class Phi2 final : public Decoder {
 public:
  std::string_view name() const override { return "phi2"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c = gguf_common_config(f, "phi2");
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = gguf_layer_norm_eps(f, "phi2");
    c.block = BlockKind::Parallel;
    c.ffn = FfnKind::Gelu;
    c.gelu_approx = gguf_gelu_approx(f);
    c.qkv_fused = gguf_block_has(f, "attn_qkv.weight");
    c.attn_out_bias = c.ffn_bias = c.output_bias = true;  // llama.cpp requires them
    c.rope_pairing = RopePairing::NeoX;
    return c;
  }

  // Phi2Model.set_gguf_parameters, but with the real FFN width (the converter writes
  // 4 x hidden_size, which is what phi-1, phi-1.5 and phi-2 have) and KV heads.
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    k.u32("context_length", c.max_seq_len);
    k.u32("embedding_length", c.dim);
    k.u32("feed_forward_length", c.hidden_dim);
    k.u32("block_count", c.n_layers);
    k.u32("attention.head_count", c.n_heads);
    k.u32("attention.head_count_kv", c.n_kv_heads);
    k.f32("attention.layer_norm_epsilon", c.norm_eps);
    k.u32("rope.dimension_count", c.rope_dim);
    k.file_type();
    k.writer().set_bool("tokenizer.ggml.add_bos_token", false);
    gguf_write_gelu(k, c);
  }
  std::vector<std::string_view> hf_model_types() const override { return {"phi"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_common_config(h, false);
    c.hidden_dim = h.integer("intermediate_size", std::nullopt);
    h.require_flag("qk_layernorm", false, "the q/k LayerNorms of Phi are not implemented");
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = float(h.number("layer_norm_eps", 1e-5));
    c.block = BlockKind::Parallel;
    c.ffn = FfnKind::Gelu;
    c.gelu_approx = hf_gelu_approx(h, "hidden_act");
    c.qkv_bias = c.attn_out_bias = c.ffn_bias = c.output_bias = true;
    HfConfig::Rope rope = h.rope(10000);
    if (!rope.partial_rotary_factor)
      rope.partial_rotary_factor = h.number("partial_rotary_factor", 0.5);
    hf_apply_rope(c, rope);
    c.rope_pairing = RopePairing::NeoX;
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    HfNames n = llama_hf_names();
    n["attn_output.weight"] = "model.layers.{}.self_attn.dense.weight";
    n["attn_output.bias"] = "model.layers.{}.self_attn.dense.bias";
    n["ffn_up.weight"] = "model.layers.{}.mlp.fc1.weight";
    n["ffn_up.bias"] = "model.layers.{}.mlp.fc1.bias";
    n["ffn_down.weight"] = "model.layers.{}.mlp.fc2.weight";
    n["ffn_down.bias"] = "model.layers.{}.mlp.fc2.bias";
    n["output_norm.weight"] = "model.final_layernorm.weight";
    n["output_norm.bias"] = "model.final_layernorm.bias";
    return load_hf(c, h, w, n);
  }
};

}  // namespace

const Architecture& phi2_architecture() {
  static const Phi2 family;
  return family;
}

}  // namespace tapml

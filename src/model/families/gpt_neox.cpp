// GPT-NeoX (Pythia): LayerNorms with biases, a parallel block with a norm for each part,
// partial rotary embeddings, a GELU MLP, biases, and q/k/v fused head by head.
#include "model/families/families.h"

namespace tapml {

namespace {

class GptNeox final : public Decoder {
 public:
  std::string_view name() const override { return "gptneox"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c = gguf_common_config(f, "gptneox");
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = gguf_layer_norm_eps(f, "gptneox");
    if (f.get_bool_or("gptneox.use_parallel_residual", true)) {
      c.block = BlockKind::Parallel;
      c.second_norm = true;
    }
    c.ffn = FfnKind::Gelu;
    c.gelu_approx = gguf_gelu_approx(f);
    c.qkv_fused = true;
    c.rope_pairing = RopePairing::NeoX;
    return c;
  }

  // GPTNeoXModel.set_gguf_parameters (which writes no general.file_type).
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    k.u32("context_length", c.max_seq_len);
    k.u32("embedding_length", c.dim);
    k.u32("block_count", c.n_layers);
    k.u32("feed_forward_length", c.hidden_dim);
    k.u32("rope.dimension_count", c.rope_dim);
    k.u32("attention.head_count", c.n_heads);
    if (c.n_kv_heads != c.n_heads) k.u32("attention.head_count_kv", c.n_kv_heads);
    k.flag("use_parallel_residual", c.block == BlockKind::Parallel);
    k.f32("attention.layer_norm_epsilon", c.norm_eps);
    gguf_write_gelu(k, c);
  }
  std::vector<std::string_view> hf_model_types() const override { return {"gpt_neox"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_common_config(h, false);
    c.hidden_dim = h.integer("intermediate_size", std::nullopt);
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = float(h.number("layer_norm_eps", 1e-5));
    if (h.flag("use_parallel_residual", true)) {
      c.block = BlockKind::Parallel;
      c.second_norm = true;
    }
    c.ffn = FfnKind::Gelu;
    c.gelu_approx = hf_gelu_approx(h, "hidden_act");
    c.qkv_fused = true;
    c.qkv_bias = c.attn_out_bias = h.flag("attention_bias", true);
    c.ffn_bias = true;
    // transformers 4 spells the RoPE fields rotary_emb_base and rotary_pct.
    HfConfig::Rope rope = h.rope(h.number("rotary_emb_base", 10000));
    if (!rope.partial_rotary_factor) rope.partial_rotary_factor = h.number("rotary_pct", 0.25);
    hf_apply_rope(c, rope);
    c.rope_pairing = RopePairing::NeoX;
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    // query_key_value holds, per head, that head's q, k and v rows; GGUF's attn_qkv holds all
    // q rows, then all k rows, then all v rows.
    const int64_t hd = c.head_dim;
    std::vector<std::pair<int64_t, int64_t>> blocks;
    for (int part = 0; part < 3; ++part)
      for (int head = 0; head < c.n_heads; ++head) blocks.push_back({(3 * head + part) * hd, hd});
    std::map<std::string, Tensor> out;
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      const std::string a = "gpt_neox.layers." + std::to_string(l) + ".attention.query_key_value.";
      out[b + "attn_qkv.weight"] = gather_rows(w.take(a + "weight"), blocks);
      if (c.qkv_bias) out[b + "attn_qkv.bias"] = gather_rows(w.take_f32(a + "bias"), blocks);
    }
    const std::string L = "gpt_neox.layers.{}.";
    HfNames n{{"token_embd.weight", "gpt_neox.embed_in.weight"},
              {"output_norm.weight", "gpt_neox.final_layer_norm.weight"},
              {"output_norm.bias", "gpt_neox.final_layer_norm.bias"},
              {"output.weight", "embed_out.weight"}};
    for (auto [gguf, hf] : {std::pair{"attn_norm", "input_layernorm"},
                            {"ffn_norm", "post_attention_layernorm"},
                            {"attn_output", "attention.dense"},
                            {"ffn_up", "mlp.dense_h_to_4h"},
                            {"ffn_down", "mlp.dense_4h_to_h"}}) {
      n[std::string(gguf) + ".weight"] = L + hf + ".weight";
      n[std::string(gguf) + ".bias"] = L + hf + ".bias";
    }
    return load_hf(c, h, w, n, std::move(out), 0, {"attention.bias", "attention.masked_bias"});
  }
};

}  // namespace

const Architecture& gpt_neox_architecture() {
  static const GptNeox family;
  return family;
}

}  // namespace tapml

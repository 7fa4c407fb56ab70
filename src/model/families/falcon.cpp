// Falcon: LayerNorms with biases, attention and the MLP in parallel (one norm each in the
// new decoder architecture), grouped (or multi-query) attention with q/k/v fused group by
// group, and a GELU MLP.
#include "model/families/families.h"

namespace tapml {

namespace {

// `name` with its first `from1` replaced by `to1`, or else its first `from2` by `to2`.
std::string swap_norms(std::string name, const std::string& from1, const std::string& to1,
                       const std::string& from2, const std::string& to2) {
  if (size_t at = name.find(from1); at != std::string::npos)
    return name.replace(at, from1.size(), to1);
  if (size_t at = name.find(from2); at != std::string::npos)
    return name.replace(at, from2.size(), to2);
  return name;
}

class Falcon final : public Decoder {
 public:
  std::string_view name() const override { return "falcon"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c = gguf_common_config(f, "falcon");
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = gguf_layer_norm_eps(f, "falcon");
    c.block = BlockKind::Parallel;  // llama.cpp's Falcon always is
    c.second_norm = gguf_block_has(f, "attn_norm_2.weight");
    c.ffn = FfnKind::Gelu;
    c.gelu_approx = gguf_gelu_approx(f);
    c.qkv_fused = true;
    c.rope_pairing = RopePairing::NeoX;
    return c;
  }

  // FalconModel.set_gguf_parameters, with the config's context and FFN width where the
  // converter writes Falcon-7B/40B's constants (2048, 4 x hidden_size).
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    if (c.block != BlockKind::Parallel)
      h.fail(
          "parallel_attn = false cannot be converted: llama.cpp's falcon always runs "
          "attention and the MLP in parallel");
    if (c.rope_dim != c.head_dim)
      h.fail(
          "partial rotary embeddings cannot be converted: llama.cpp's falcon rotates whole "
          "heads");
    k.u32("context_length", c.max_seq_len);
    k.text("tensor_data_layout", "jploski");  // q, k, v regrouped (weights_from_hf)
    k.u32("embedding_length", c.dim);
    k.u32("feed_forward_length", c.hidden_dim);
    k.u32("block_count", c.n_layers);
    k.u32("attention.head_count", c.n_heads);
    k.u32("attention.head_count_kv", c.n_kv_heads);
    k.f32("attention.layer_norm_epsilon", c.norm_eps);
    k.file_type();
    gguf_write_gelu(k, c);
  }

  // With two norms, llama.cpp's attn_norm is the MLP's (ln_mlp) and attn_norm_2 attention's
  // (ln_attn); TapML names them after what they feed.
  std::string gguf_tensor_name(const ModelConfig& c, const std::string& name) const override {
    if (!c.second_norm) return name;
    return swap_norms(name, ".attn_norm.", ".attn_norm_2.", ".ffn_norm.", ".attn_norm.");
  }
  std::string tensor_name_from_gguf(const ModelConfig& c,
                                    const std::string& gguf_name) const override {
    if (!c.second_norm) return gguf_name;
    return swap_norms(gguf_name, ".attn_norm_2.", ".attn_norm.", ".attn_norm.", ".ffn_norm.");
  }
  std::vector<std::string_view> hf_model_types() const override { return {"falcon"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c;
    c.dim = h.integer("hidden_size", std::nullopt);
    c.n_layers = h.integer("num_hidden_layers", std::nullopt, 4096);
    c.n_heads = h.integer("num_attention_heads", std::nullopt, 65536);
    c.vocab_size = h.integer("vocab_size", std::nullopt, 1 << 24);
    c.max_seq_len = h.integer("max_position_embeddings", 2048, 1 << 24);
    if (c.dim % c.n_heads != 0) h.fail("hidden_size is not divisible by num_attention_heads");
    c.head_dim = c.rope_dim = c.dim / c.n_heads;
    c.hidden_dim = h.integer("ffn_hidden_size", 4 * c.dim);
    c.shared_classifier = h.flag("tie_word_embeddings", true);
    h.require_flag("alibi", false, "ALiBi position biases are not implemented");
    bool new_arch = h.flag("new_decoder_architecture", false);
    if (new_arch)
      c.n_kv_heads = h.integer("num_kv_heads", c.n_heads, 65536);
    else
      c.n_kv_heads = h.flag("multi_query", true) ? 1 : c.n_heads;
    c.norm = NormKind::Layer;
    c.norm_bias = true;
    c.norm_eps = float(h.number("layer_norm_epsilon", 1e-5));
    if (h.flag("parallel_attn", true)) {
      c.block = BlockKind::Parallel;
      c.second_norm = new_arch && h.integer("num_ln_in_parallel_attn", 2) == 2;
    }
    c.ffn = FfnKind::Gelu;
    c.gelu_approx = hf_gelu_approx(h, h.has("activation") ? "activation" : "hidden_act");
    c.qkv_fused = true;
    c.qkv_bias = c.attn_out_bias = c.ffn_bias = h.flag("bias", false);
    hf_apply_rope(c, h.rope(10000));
    c.rope_pairing = RopePairing::NeoX;
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    // query_key_value groups, per KV head, its query heads, then its key, then its value;
    // GGUF's attn_qkv holds all q rows, then all k rows, then all v rows. (Multi-query is one
    // group; the original layout without GQA is one group per head.)
    const int64_t hd = c.head_dim, per_group = c.n_heads / c.n_kv_heads + 2;
    std::vector<std::pair<int64_t, int64_t>> blocks;
    for (int g = 0; g < c.n_kv_heads; ++g)
      for (int64_t j = 0; j < per_group - 2; ++j) blocks.push_back({(g * per_group + j) * hd, hd});
    for (int64_t part : {per_group - 2, per_group - 1})
      for (int g = 0; g < c.n_kv_heads; ++g) blocks.push_back({(g * per_group + part) * hd, hd});
    std::map<std::string, Tensor> out;
    const bool parallel_two = c.block == BlockKind::Parallel && c.second_norm;
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      const std::string a =
          "transformer.h." + std::to_string(l) + ".self_attention.query_key_value.";
      out[b + "attn_qkv.weight"] = gather_rows(w.take(a + "weight"), blocks);
      if (c.qkv_bias) out[b + "attn_qkv.bias"] = gather_rows(w.take_f32(a + "bias"), blocks);
    }
    const std::string L = "transformer.h.{}.";
    HfNames n{{"token_embd.weight", "transformer.word_embeddings.weight"},
              {"output_norm.weight", "transformer.ln_f.weight"},
              {"output_norm.bias", "transformer.ln_f.bias"},
              {"output.weight", "lm_head.weight"}};
    for (auto [gguf, hf] : {std::pair{"attn_norm", parallel_two ? "ln_attn" : "input_layernorm"},
                            {"ffn_norm", parallel_two ? "ln_mlp" : "post_attention_layernorm"},
                            {"attn_output", "self_attention.dense"},
                            {"ffn_up", "mlp.dense_h_to_4h"},
                            {"ffn_down", "mlp.dense_4h_to_h"}}) {
      n[std::string(gguf) + ".weight"] = L + hf + ".weight";
      n[std::string(gguf) + ".bias"] = L + hf + ".bias";
    }
    return load_hf(c, h, w, n, std::move(out));
  }
};

}  // namespace

const Architecture& falcon_architecture() {
  static const Falcon family;
  return family;
}

}  // namespace tapml

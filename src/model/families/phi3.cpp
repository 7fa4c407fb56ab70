// Phi-3: Llama with fused q/k/v and gate/up projections (one weight each).
#include <algorithm>

#include "model/families/families.h"

namespace tapml {

namespace {

class Phi3 final : public Decoder {
 public:
  std::string_view name() const override { return "phi3"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c = gguf_common_config(f, "phi3");
    c.norm_eps = gguf_rms_eps(f, "phi3");
    c.rope_pairing = RopePairing::NeoX;
    c.qkv_fused = gguf_block_has(f, "attn_qkv.weight");
    c.gate_up_fused = true;
    // llama.cpp reads Phi-3's window and then runs without it; TapML applies it (on the
    // layers tapml.attention.sliding_window_pattern marks, if any).
    if (f.has("phi3.attention.sliding_window")) {
      int w = int(f.get_uint("phi3.attention.sliding_window"));
      gguf_periodic_windows(c, f, "phi3", w, 0);
    }
    return c;
  }

  // Phi3MiniModel.set_gguf_parameters.
  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    k.u32("context_length", c.max_seq_len);
    if (h.has("original_max_position_embeddings"))
      k.u32("rope.scaling.original_context_length",
            h.integer("original_max_position_embeddings", std::nullopt, 1 << 30));
    k.u32("embedding_length", c.dim);
    k.u32("feed_forward_length", c.hidden_dim);
    k.u32("block_count", c.n_layers);
    k.u32("attention.head_count", c.n_heads);
    k.u32("attention.head_count_kv", c.n_kv_heads);
    k.f32("attention.layer_norm_rms_epsilon", c.norm_eps);
    k.u32("rope.dimension_count", c.rope_dim);
    k.f32("rope.freq_base", c.rope_base);
    k.file_type();
    int window = 0;
    bool every = true;
    for (int l = 0; l < c.n_layers; ++l) {
      window = std::max(window, c.window(l));
      every = every && c.window(l) > 0;
    }
    k.u32("attention.sliding_window", window);  // 0 for none, as the converter writes
    if (window > 0) {
      if (!every) gguf_write_window_period(k, c, 0);
      k.note("llama.cpp's phi3 reads the sliding window of " + std::to_string(window) +
             " and runs without it (TapML applies it)");
    }
  }
  std::vector<std::string_view> hf_model_types() const override { return {"phi3"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, false, "rms_norm_eps", 1e-5, 10000);
    c.qkv_fused = true;
    c.gate_up_fused = true;
    hf_windows(c, h, true);
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    HfNames n = llama_hf_names();
    n["attn_qkv.weight"] = "model.layers.{}.self_attn.qkv_proj.weight";
    n["attn_qkv.bias"] = "model.layers.{}.self_attn.qkv_proj.bias";
    n["ffn_up.weight"] = "model.layers.{}.mlp.gate_up_proj.weight";
    n["ffn_up.bias"] = "model.layers.{}.mlp.gate_up_proj.bias";
    return load_hf(c, h, w, n);
  }
};

}  // namespace

const Architecture& phi3_architecture() {
  static const Phi3 family;
  return family;
}

}  // namespace tapml

// Qwen2-MoE: Qwen2 whose MLP is a mixture of experts (softmax router, top k, optionally not
// renormalized) plus a shared expert scaled by a sigmoid gate.
#include "core/error.h"
#include "model/families/families.h"

namespace tapml {

namespace {

class Qwen2Moe final : public Decoder {
 public:
  std::string_view name() const override { return "qwen2moe"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    const std::string a = "qwen2moe";
    ModelConfig c = gguf_common_config(f, a);
    c.norm_eps = gguf_rms_eps(f, a);
    c.rope_pairing = RopePairing::NeoX;
    TAPML_REQUIRE(c.n_experts > 0, f.path() + ": " + a + ".expert_count is missing or 0");
    c.ffn = FfnKind::Moe;
    // llama.cpp's defaults: the FFN width shared among the experts used, and the dense width.
    c.expert_hidden_dim = gguf_hyperparameter(f, a + ".expert_feed_forward_length",
                                              uint64_t(c.hidden_dim / c.n_experts_used));
    if (gguf_block_has(f, "ffn_gate_shexp.weight")) {
      c.shared_expert_dim =
          gguf_hyperparameter(f, a + ".expert_shared_feed_forward_length", uint64_t(c.hidden_dim));
      c.shared_expert_gate = gguf_block_has(f, "ffn_gate_inp_shexp.weight");
    }
    // llama.cpp's Qwen2-MoE never renormalizes; norm_topk_prob needs TapML's key.
    c.experts_norm = f.get_bool_or("tapml.expert_weights_norm", false);
    return c;
  }

  void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const override {
    gguf_text_model_keys(k, c, h);
    if (h.has("moe_intermediate_size")) k.u32("expert_feed_forward_length", c.expert_hidden_dim);
    if (h.has("shared_expert_intermediate_size"))
      k.u32("expert_shared_feed_forward_length", c.shared_expert_dim);
    if (c.experts_norm) {
      k.writer().set_bool("tapml.expert_weights_norm", true);
      k.note(
          "llama.cpp's qwen2moe does not renormalize the chosen experts' weights "
          "(norm_topk_prob; tapml.expert_weights_norm keeps TapML exact)");
    }
  }
  std::vector<std::string_view> hf_model_types() const override { return {"qwen2_moe"}; }

  ModelConfig config_from_hf(const HfConfig& h) const override {
    ModelConfig c = hf_llama_like_config(h, false, "rms_norm_eps", 1e-6, 10000);
    h.require_flag("use_sliding_window", false, "Qwen2-MoE's sliding window is not implemented");
    if (h.count("decoder_sparse_step", 1) != 1)
      h.fail(
          "decoder_sparse_step other than 1 (dense layers between sparse ones) is not supported");
    if (h.has("mlp_only_layers") && h.list_size("mlp_only_layers") > 0)
      h.fail("mlp_only_layers (dense layers among sparse ones) is not supported");
    c.qkv_bias = h.flag("qkv_bias", true);
    c.attn_out_bias = false;
    c.ffn = FfnKind::Moe;
    c.n_experts = h.integer("num_experts", 60, 4096);
    c.n_experts_used = h.integer("num_experts_per_tok", 4, 4096);
    c.experts_norm = h.flag("norm_topk_prob", false);
    c.expert_hidden_dim = h.integer("moe_intermediate_size", std::nullopt);
    c.shared_expert_dim = h.count("shared_expert_intermediate_size", 0);
    c.shared_expert_gate = c.shared_expert_dim > 0;
    return c;
  }

  std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                HfWeights& w) const override {
    std::map<std::string, Tensor> out;
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      const std::string m = "model.layers." + std::to_string(l) + ".mlp.";
      out[b + "ffn_gate_inp.weight"] = w.take(m + "gate.weight");
      hf_stack_experts(c, w, l, m, "gate_proj", "up_proj", "down_proj", out);
      if (c.shared_expert_dim) {
        out[b + "ffn_gate_inp_shexp.weight"] = w.take(m + "shared_expert_gate.weight");
        out[b + "ffn_gate_shexp.weight"] = w.take(m + "shared_expert.gate_proj.weight");
        out[b + "ffn_up_shexp.weight"] = w.take(m + "shared_expert.up_proj.weight");
        out[b + "ffn_down_shexp.weight"] = w.take(m + "shared_expert.down_proj.weight");
      }
    }
    return load_hf(c, h, w, llama_hf_names(), std::move(out));
  }
};

}  // namespace

const Architecture& qwen2_moe_architecture() {
  static const Qwen2Moe family;
  return family;
}

}  // namespace tapml

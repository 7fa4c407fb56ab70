// The decoder-only transformer that every supported family is a variant of, driven by the
// ModelConfig fields a family sets: norm kind, sequential or parallel blocks, pre- and
// post-norms, biases, fused projections, q/k norms, RoPE variants, sliding windows,
// soft-capping, multipliers, learned positions, mixtures of experts. A family file
// (model/families/<name>.cpp) derives from Decoder and says how its files spell those
// fields and weights; the weights, the cache and the forward pass are Decoder's.
//
// Sites are named after the GGUF tensors (blk.N.attn_q, ...) and the weightless steps
// (blk.N.rope_q, blk.N.attn, blk.N.ffn_act, blk.N.attn_residual, ...); a bias added after a
// site's matmul or LayerNorm is the site ROLE_bias (blk.N.attn_q_bias).
#pragma once
#include <map>
#include <string>

#include "model/architecture.h"
#include "model/hf_model.h"

namespace tapml {

// Where transformers keeps each weight: GGUF name -> Hugging Face name. Block weights are
// named without their "blk.N." prefix and "{}" in the HF name stands for the layer.
using HfNames = std::map<std::string, std::string>;
// transformers' Llama layout (model.layers.{}.self_attn.q_proj.weight, ...), which most
// families share; a family edits a copy.
HfNames llama_hf_names();

class Decoder : public Architecture {
 public:
  // Families whose GGUF files TapML does not read yet say so.
  ModelConfig config_from_gguf(const gguf::File& f) const override;
  void check(const ModelConfig& c) const override;
  std::vector<WeightSpec> weights(const ModelConfig& c) const override;
  std::vector<CacheSpec> cache(const ModelConfig& c, int context) const override;
  Val forward(const ModelConfig& c, Emitter& e, std::span<const Val> cache,
              std::span<const int32_t> tokens, int pos, bool all_logits) const override;

 protected:
  // Reads every weight of weights(c) by `names`, except those already in `out` (which a family
  // fills first for weights that need more than renaming). Norm weights get `norm_offset`
  // added (Gemma stores w - 1); norms and biases become f32. Then checks that every folder
  // tensor was used, but for names ending in one of `ignorable`.
  // RoPE frequency divisors (rope_freqs.weight) come from the config's scaling.
  std::map<std::string, Tensor> load_hf(const ModelConfig& c, const HfConfig& h, HfWeights& w,
                                        const HfNames& names,
                                        std::map<std::string, Tensor> out = {},
                                        float norm_offset = 0,
                                        std::vector<std::string> ignorable = {}) const;
};

// What sets a decoder apart from Llama's, one phrase each ("layernorm with bias", "sliding
// window 8 on layers 0, 2", ...); empty for a plain Llama.
std::vector<std::string> decoder_features(const ModelConfig& c);

// The fields transformers' configs share under the same names: sizes, heads, head_dim,
// vocabulary, context, tied embeddings (`tie_default` when absent). RoPE and norms are the
// family's to read.
ModelConfig hf_common_config(const HfConfig& h, bool tie_default);
// hidden_act / hidden_activation as gelu_approx (0 erf, 1 tanh) for GELU families; Error for
// an activation the family does not implement.
int hf_gelu_approx(const HfConfig& h, const std::string& key);
// Requires the activation to be SiLU (SwiGLU families).
void hf_require_silu(const HfConfig& h, const std::string& key);
// What the SwiGLU/RMSNorm families that follow transformers' Llama share: common sizes,
// intermediate_size, SiLU, RMSNorm eps from `eps_key`, RoPE (rotate-half pairing) with
// `default_theta`, attention_bias and mlp_bias.
ModelConfig hf_llama_like_config(const HfConfig& h, bool tie_default, const char* eps_key,
                                 double eps_default, double default_theta);
// One layer's experts stacked as GGUF's blk.N.ffn_{gate,up,down}_exps.weight [experts, rows,
// cols] into `out`, from PREFIX + "experts.E." + NAME + ".weight" for each projection's NAME.
void hf_stack_experts(const ModelConfig& c, HfWeights& w, int layer, const std::string& prefix,
                      const char* gate, const char* up, const char* down,
                      std::map<std::string, Tensor>& out);
// RoPE fields from `rope`: base, rotated dimensions (partial_rotary_factor), Llama 3.1 or
// linear scaling (sets rope_freqs; the factors are computed by hf_rope_freqs).
void hf_apply_rope(ModelConfig& c, const HfConfig::Rope& rope);
// Sliding windows per layer from layer_types / sliding_window (0 everywhere when the model has
// none).
void hf_windows(ModelConfig& c, const HfConfig& h, bool every_layer_if_no_types);

}  // namespace tapml

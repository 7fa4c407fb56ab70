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
  std::vector<CacheSpec> cache(const ModelConfig& c, int context, DType kv) const override;
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

// GGUF files as llama.cpp writes and reads them. Keys named "ARCH.KEY" below are read under the
// architecture's prefix. TapML's own keys, for what llama.cpp cannot express (README, "Your
// model"):
//   tapml.attention.sliding_window          U32   the window of the sliding layers
//   tapml.attention.sliding_window_pattern  [BOOL] which layers slide (absent: every layer
//                                           with tapml.attention.sliding_window, llama.cpp's
//                                           period for Gemma 2 and 3)
//   tapml.attention.scale                   F32   the q.k scale, where llama.cpp's differs
//   tapml.activation.gelu                   STR   "erf": exact GELU (llama.cpp's is tanh's)
//   tapml.expert_weights_norm               BOOL  renormalize the chosen experts' weights
//                                           (Qwen2-MoE's norm_topk_prob)
//
// What every architecture states: sizes, heads (ARCH.attention.key_length for head_dim),
// context, vocabulary (ARCH.vocab_size, else the tokenizer's token list, else token_embd's
// rows), RoPE dimensions and base, experts (ARCH.expert_count, ARCH.expert_used_count), the
// biases the file holds (q/k/v or fused qkv, attention output, FFN, classifier), and
// the classifier (shared with token_embd when output.weight is absent).
ModelConfig gguf_common_config(const gguf::File& f, const std::string& arch);
// Whether the first block has a tensor of this role ("attn_q.bias": blk.0.attn_q.bias).
bool gguf_block_has(const gguf::File& f, const std::string& role);
// ARCH.attention.layer_norm_rms_epsilon / ARCH.attention.layer_norm_epsilon.
float gguf_rms_eps(const gguf::File& f, const std::string& arch);
float gguf_layer_norm_eps(const gguf::File& f, const std::string& arch);
// tapml.activation.gelu as gelu_approx: 0 erf, 1 tanh (the default, llama.cpp's GELU).
int gguf_gelu_approx(const gguf::File& f);
// tapml.attention.sliding_window on every layer, or on those tapml.attention.sliding_window_pattern
// marks; no windows without it.
void gguf_tapml_windows(ModelConfig& c, const gguf::File& f);
// Windows of `window` positions where llama.cpp's period says
// (ARCH.attention.sliding_window_pattern, default `period`: layer l slides when l % period < period
// - 1; period 0: every layer), unless tapml.attention.sliding_window_pattern lists the sliding
// layers.
void gguf_periodic_windows(ModelConfig& c, const gguf::File& f, const std::string& arch, int window,
                           int period);
// tapml.attention.scale, else `fallback` (0: 1/sqrt(head_dim)).
double gguf_attention_scale(const gguf::File& f, double fallback);

// Writing them (families' gguf_metadata), as llama.cpp's convert_hf_to_gguf.py does:
// what TextModel.set_gguf_parameters writes for the classes that call it (block count, context,
// sizes, heads, RoPE scaling type and bases, norm epsilons, experts, key/value lengths where
// config.json has head_dim, the file type).
// `head_dim_keys` false leaves out the key/value lengths (Granite's converter drops head_dim).
void gguf_text_model_keys(GgufKeys& k, const ModelConfig& c, const HfConfig& h,
                          bool head_dim_keys = true);
// tapml.attention.sliding_window (+ _pattern) for families llama.cpp runs without windows.
void gguf_write_tapml_windows(GgufKeys& k, const ModelConfig& c);
// ARCH.attention.sliding_window_pattern where the sliding layers follow a period other than
// llama.cpp's `default_period` for the family; tapml.attention.sliding_window_pattern where they
// follow none.
void gguf_write_window_period(GgufKeys& k, const ModelConfig& c, int default_period);
// tapml.activation.gelu = "erf" for an exact-GELU feed-forward.
void gguf_write_gelu(GgufKeys& k, const ModelConfig& c);
// tapml.attention.scale when the config's q.k scale is not `llama_cpp_scale`.
void gguf_write_attention_scale(GgufKeys& k, const ModelConfig& c, double llama_cpp_scale);

}  // namespace tapml

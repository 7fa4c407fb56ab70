// A model family, described once: its hyperparameters as a file states them, the weights
// its forward pass reads, the state it keeps between steps (the KV cache), and the forward
// pass itself as op calls on named sites. The session runs any family through this interface;
// a new family is one file (like llama.cpp) and one line in architecture.cpp's list.
#pragma once
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/shape.h"
#include "format/gguf.h"
#include "model/emitter.h"

namespace tapml {

class HfConfig;
class HfWeights;

enum class RopePairing : int {
  Adjacent = 0,  // rotate (x[2i], x[2i+1]): llama2.c, GGUF llama ("norm" rope)
  NeoX = 1,      // rotate (x[i], x[i + rope_dim/2])
};

enum class NormKind : int {
  Rms = 0,    // x / sqrt(mean(x^2) + eps) * w
  Layer = 1,  // (x - mean) / sqrt(var + eps) * w (+ b)
};

enum class FfnKind : int {
  SwiGlu = 0,  // down(silu(gate x) * up x)
  GeGlu = 1,   // down(gelu(gate x) * up x)
  Gelu = 2,    // down(gelu(up x)): no gate
  Moe = 3,     // a router picks experts (each a SwiGlu FFN), plus an optional shared expert
};

// How a block combines its attention and feed-forward parts.
enum class BlockKind : int {
  // x += attn(norm(x)); x += ffn(ffn_norm(x)). With post norms, each part's output is
  // normalized before it is added (Gemma 2/3; OLMo 2 has only those, no pre-norms).
  Sequential = 0,
  // x += attn(norm(x)) + ffn(norm2(x)), norm2 = norm unless the family has a second one.
  Parallel = 1,
};

enum class QkNorm : int {
  None = 0,
  PerHead = 1,  // RMSNorm over each head's head_dim values (Qwen3, Gemma 3)
  Whole = 2,    // RMSNorm over the whole q (and k) projection (OLMo 2)
};

// Hyperparameters. Every family sets the common ones; fields a family does not use keep
// their defaults, which are Llama's.
struct ModelConfig {
  int dim = 0;         // embedding width
  int hidden_dim = 0;  // feed-forward width
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int vocab_size = 0;
  int max_seq_len = 0;  // context length
  int head_dim = 0;     // dim / n_heads unless the file says otherwise
  int rope_dim = 0;     // rotated dimensions per head (<= head_dim)
  float rope_base = 10000.0f;
  float norm_eps = 1e-5f;
  RopePairing rope_pairing = RopePairing::Adjacent;
  bool shared_classifier = false;  // output.weight absent: logits use token_embd.weight

  // The decoder's shape (see decoder.h); Llama's values by default.
  NormKind norm = NormKind::Rms;
  bool norm_bias = false;  // LayerNorms carry a bias
  BlockKind block = BlockKind::Sequential;
  bool pre_norms = true;     // attn_norm / ffn_norm before each part
  bool post_norms = false;   // post_attention_norm / post_ffw_norm after each part
  bool second_norm = false;  // parallel block: ffn reads attn_norm_2(x), not attn_norm(x)
  FfnKind ffn = FfnKind::SwiGlu;
  int gelu_approx = 0;         // GeGlu / Gelu: 0 erf, 1 tanh
  bool qkv_fused = false;      // one attn_qkv weight (rows q, then k, then v)
  bool gate_up_fused = false;  // ffn_up holds the gate's rows, then the up's
  bool qkv_bias = false, attn_out_bias = false, ffn_bias = false, output_bias = false;
  QkNorm qk_norm = QkNorm::None;
  bool learned_positions = false;  // position_embd.weight added to the token embedding
  bool rope = true;                // false: no rotary embedding at all
  bool rope_freqs = false;         // rope_freqs.weight divides the frequencies (Llama 3.1)
  // Multipliers; 0 means none (1). attn_scale 0 means 1/sqrt(head_dim).
  double embed_scale = 0, residual_scale = 0, attn_scale = 0, logit_scale = 0;
  double attn_softcap = 0, final_softcap = 0;  // 0: no soft-capping
  // Per layer: the sliding window (0: none) and the RoPE base; empty: no window, rope_base.
  std::vector<int> layer_window;
  std::vector<float> layer_rope_base;
  // Mixture of experts (ffn == Moe).
  int n_experts = 0, n_experts_used = 0;
  bool experts_norm = false;  // renormalize the chosen experts' weights to sum to 1
  int expert_hidden_dim = 0;  // each expert's FFN width (hidden_dim unless set)
  int shared_expert_dim = 0;  // 0: no shared expert
  bool shared_expert_gate = false;

  int window(int layer) const { return layer_window.empty() ? 0 : layer_window[size_t(layer)]; }
  float base(int layer) const {
    return layer_rope_base.empty() ? rope_base : layer_rope_base[size_t(layer)];
  }
};

// One weight the forward pass reads: its GGUF name and [out, in] shape. `norm` marks the
// 1-D vectors (normalization weights, biases), which converters keep in f32.
struct WeightSpec {
  std::string name;
  Shape shape;
  bool norm = false;
};

// The metadata of a GGUF file being written for one architecture: set("context_length", ...)
// writes ARCH.context_length; the writer takes general.* and tapml.* keys directly. Values are
// typed as llama.cpp's converter types them (U32 sizes, F32 numbers).
class GgufKeys {
 public:
  GgufKeys(gguf::Writer& w, std::string arch, uint32_t file_type)
      : w_(w), arch_(std::move(arch)), file_type_(file_type) {}
  const std::string& arch() const { return arch_; }
  gguf::Writer& writer() { return w_; }
  // general.file_type (llama.cpp's LLAMA_FTYPE: 0 all f32, 1 mostly f16, 32 mostly bf16),
  // which the converter writes among the architecture's keys.
  void file_type();
  void u32(const std::string& key, int64_t x);
  void f32(const std::string& key, double x);
  void flag(const std::string& key, bool x);
  void text(const std::string& key, const std::string& x);
  // What llama.cpp will run differently from the folder (a window it has no key for, a tensor
  // its loader refuses), for the converter to tell.
  void note(std::string what) { notes_.push_back(std::move(what)); }
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  gguf::Writer& w_;
  std::string arch_;
  uint32_t file_type_;
  std::vector<std::string> notes_;
};

// One tensor of the state a family keeps across steps; the session allocates it zeroed, once,
// and hands it back to every forward().
struct CacheSpec {
  std::string name;  // "blk.3.k_cache"
  DType dtype = DType::F32;
  Shape shape;
};

class Architecture {
 public:
  virtual ~Architecture() = default;
  // The family's name, as GGUF's general.architecture spells it ("llama").
  virtual std::string_view name() const = 0;
  // Hyperparameters from a GGUF file's metadata (the keys llama.cpp reads, tapml.* keys for
  // what it cannot express) and tensor directory; Error naming a missing or absurd key.
  virtual ModelConfig config_from_gguf(const gguf::File& f) const = 0;
  // The transformers `model_type`s this family reads from Hugging Face folders.
  virtual std::vector<std::string_view> hf_model_types() const { return {}; }
  // Hyperparameters from config.json; Error naming a missing field, or a field whose value
  // changes the math in a way this family does not implement.
  virtual ModelConfig config_from_hf(const HfConfig& c) const;
  // The weights under their GGUF names, from the folder's; every folder tensor must be used.
  virtual std::map<std::string, Tensor> weights_from_hf(const ModelConfig& c, const HfConfig& h,
                                                        HfWeights& w) const;
  // GGUF files as llama.cpp's convert_hf_to_gguf.py writes them (model/convert.h writes them,
  // config_from_gguf reads them back):
  // - general.architecture of this family's files ("llama" for Mistral and Mixtral, which
  //   llama.cpp runs as Llama);
  virtual std::string_view gguf_architecture() const { return name(); }
  // - the pairs RoPE rotates there: llama.cpp's converter permutes the q and k rows of the
  //   Llama-like architectures so that adjacent pairs rotate (its "norm" RoPE);
  virtual RopePairing gguf_rope_pairing() const { return RopePairing::NeoX; }
  // - the metadata the converter writes for this family from config.json (general.* and the
  //   vocabulary aside), in its order, plus tapml.* keys for what llama.cpp cannot express;
  //   Error for a config that llama.cpp's files cannot hold at all;
  virtual void gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h) const;
  // - a weight's name in those files, and back (Falcon's two norms are named otherwise).
  virtual std::string gguf_tensor_name(const ModelConfig& c, const std::string& name) const {
    return name;
  }
  virtual std::string tensor_name_from_gguf(const ModelConfig& c,
                                            const std::string& gguf_name) const {
    return gguf_name;
  }
  // Checks that the hyperparameters are consistent; Error naming the first problem.
  virtual void check(const ModelConfig& c) const = 0;
  // Every weight forward() reads, in GGUF order.
  virtual std::vector<WeightSpec> weights(const ModelConfig& c) const = 0;
  // The persistent state for `context` positions, in the order forward() takes it; keys and
  // values held as `kv` (f32, or f16 for a half-precision cache).
  virtual std::vector<CacheSpec> cache(const ModelConfig& c, int context, DType kv) const = 0;
  // Runs `tokens` (T rows) at positions pos .. pos+T-1, updating `cache`. Returns the logits:
  // [T, vocab] when all_logits, else [1, vocab] for the last row. Sites are named after the
  // GGUF tensors (token_embd, blk.N.attn_q, ...) plus the weightless ops' (blk.N.rope_q,
  // blk.N.kv_store, blk.N.attn, blk.N.ffn_act, blk.N.attn_residual, ...).
  virtual Val forward(const ModelConfig& c, Emitter& e, std::span<const Val> cache,
                      std::span<const int32_t> tokens, int pos, bool all_logits) const = 0;
};

// The family of that name; Error listing the supported ones for any other.
const Architecture& architecture(std::string_view name);
std::vector<std::string_view> architecture_names();
// The family that reads Hugging Face folders of that model_type; Error listing the supported
// ones for any other.
const Architecture& architecture_for_hf(std::string_view model_type);

// For families' config_from_gguf: a positive integer hyperparameter, present or defaulted,
// at most `max`; Error("PATH: KEY = x is out of range") otherwise.
int gguf_hyperparameter(const gguf::File& f, const std::string& key,
                        std::optional<uint64_t> fallback, uint64_t max = uint64_t(1) << 20);

}  // namespace tapml

// A model family, described once: its hyperparameters as a file states them, the weights
// its forward pass reads, the state it keeps between steps (the KV cache), and the forward
// pass itself as op calls on named sites. The session runs any family through this interface;
// a new family is one file (like llama.cpp) and one line in architecture.cpp's list.
#pragma once
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/shape.h"
#include "format/gguf.h"
#include "model/emitter.h"

namespace tapml {

enum class RopePairing : int {
  Adjacent = 0,  // rotate (x[2i], x[2i+1]): llama2.c, GGUF llama ("norm" rope)
  NeoX = 1,      // rotate (x[i], x[i + rope_dim/2])
};

// Hyperparameters. Every family sets the common ones; fields a family does not use keep
// their defaults.
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
  float rms_eps = 1e-5f;
  RopePairing rope_pairing = RopePairing::Adjacent;
  bool shared_classifier = false;  // output.weight absent: logits use token_embd.weight
};

// One weight the forward pass reads: its GGUF name and [out, in] shape. `norm` marks the
// 1-D normalization weights (converters keep them f32).
struct WeightSpec {
  std::string name;
  Shape shape;
  bool norm = false;
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
  // Hyperparameters from a GGUF file's metadata; Error naming a missing or absurd key.
  virtual ModelConfig config_from_gguf(const gguf::File& f) const = 0;
  // Checks that the hyperparameters are consistent; Error naming the first problem.
  virtual void check(const ModelConfig& c) const = 0;
  // Every weight forward() reads, in GGUF order.
  virtual std::vector<WeightSpec> weights(const ModelConfig& c) const = 0;
  // The persistent state for `context` positions, in the order forward() takes it.
  virtual std::vector<CacheSpec> cache(const ModelConfig& c, int context) const = 0;
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

// For families' config_from_gguf: a positive integer hyperparameter, present or defaulted,
// at most `max`; Error("PATH: KEY = x is out of range") otherwise.
int gguf_hyperparameter(const gguf::File& f, const std::string& key,
                        std::optional<uint64_t> fallback, uint64_t max = uint64_t(1) << 20);

}  // namespace tapml

// The Llama forward pass, once, as op calls on GGUF-named sites. Reads like llama2.c's
// forward(): embedding, then per layer attention and SwiGLU feed-forward with pre-norms and
// residuals, then the final norm and classifier.
#pragma once
#include <span>
#include <vector>

#include "model/emitter.h"
#include "model/model_file.h"

namespace tapml {

// The KV cache as the session owns it: per layer a [max_seq_len, n_kv_heads*head_dim] f32
// tensor for keys and one for values.
struct LlamaCache {
  std::vector<Val> k, v;
};

// Runs `tokens` (T rows) at positions pos .. pos+T-1, storing their keys and values in the
// cache. Returns the logits: [T, vocab] when all_logits, else [1, vocab] for the last row.
Val llama_forward(const LlamaConfig& cfg, Emitter& e, const LlamaCache& cache,
                  std::span<const int32_t> tokens, int pos, bool all_logits);

}  // namespace tapml

// The Llama family (llama2.c checkpoints, GGUF "llama"): token embedding, then per layer
// RMSNorm, attention with RoPE and grouped KV heads, and a SwiGLU feed-forward, each with a
// residual; a final RMSNorm and the classifier (shared with the embedding when the file has
// no output.weight).
#pragma once
#include "model/architecture.h"

namespace tapml {

const Architecture& llama_architecture();

}  // namespace tapml

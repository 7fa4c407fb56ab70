// A small Llama with seeded random weights, built in memory, for tests that need a model
// but not a particular one.
#pragma once
#include <cstdint>

#include "model/model_file.h"

namespace tapml::testing {

// dim 32, hidden 48, 2 layers, 4 heads, 2 KV heads, vocab 40, context 64 unless changed.
// A block weight_dtype quantizes every matrix (the widths must hold whole blocks).
ModelFile make_tiny_llama(uint32_t seed, DType weight_dtype = DType::F32, ModelConfig config = {});

}  // namespace tapml::testing

// Every family TapML runs, one file each in this folder; architecture.cpp lists them.
#pragma once
#include "model/decoder.h"

namespace tapml {

const Architecture& llama_architecture();
const Architecture& mistral_architecture();
const Architecture& mixtral_architecture();
const Architecture& qwen2_architecture();
const Architecture& qwen2_moe_architecture();
const Architecture& qwen3_architecture();
const Architecture& gemma_architecture();
const Architecture& gemma2_architecture();
const Architecture& gemma3_architecture();
const Architecture& phi2_architecture();
const Architecture& phi3_architecture();
const Architecture& gpt_neox_architecture();
const Architecture& stablelm_architecture();
const Architecture& olmo2_architecture();
const Architecture& starcoder2_architecture();
const Architecture& granite_architecture();
const Architecture& gpt2_architecture();
const Architecture& falcon_architecture();
const Architecture& cohere_architecture();

// What the Gemma families share (defined in gemma.cpp): sizes, GeGLU, RMSNorm, embedding
// scale, RoPE; sliding windows from layer_types or every `pattern`-th layer global; and
// Gemma 2's four norms per block.
ModelConfig gemma_config(const HfConfig& h);
void gemma_windows(ModelConfig& c, const HfConfig& h, int pattern);
HfNames gemma2_hf_names();

}  // namespace tapml

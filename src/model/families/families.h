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

// llama.cpp's Llama architecture, which also runs Mistral and Mixtral (llama.cpp): the
// hyperparameters of a GGUF file under `arch`, and the metadata the converter writes.
ModelConfig llama_gguf_config(const gguf::File& f, const std::string& arch);
void llama_gguf_metadata(GgufKeys& k, const ModelConfig& c, const HfConfig& h);

// What the Gemma families share (defined in gemma.cpp): sizes, GeGLU, RMSNorm, embedding
// scale, RoPE; sliding windows from layer_types or every `pattern`-th layer global; and
// Gemma 2's four norms per block.
ModelConfig gemma_config(const HfConfig& h);
void gemma_windows(ModelConfig& c, const HfConfig& h, int pattern);
HfNames gemma2_hf_names();
// Their GGUF files: what Gemma's reads and writes, and llama.cpp's query scale for the family
// (1/sqrt(head_dim), or 1/sqrt(hidden/heads) for the 27B model of `layers_27b` layers).
ModelConfig gemma_gguf_config(const gguf::File& f, const std::string& arch);
void gemma_gguf_keys(GgufKeys& k, const ModelConfig& c, const HfConfig& h);
double gemma_llama_cpp_scale(const ModelConfig& c, int layers_27b);

}  // namespace tapml

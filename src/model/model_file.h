// A model read from disk: architecture hyperparameters and named weights, whatever the file
// format. Weight names follow the GGUF convention (token_embd.weight, blk.N.attn_q.weight,
// output_norm.weight, output.weight, ...); matrices are [out, in] row-major.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "format/gguf.h"
#include "model/architecture.h"

namespace tapml {

class HfConfig;

struct ModelFile {
  std::string path;
  std::string format;  // "gguf", "llama2c" or "hf" (a Hugging Face folder)
  std::string arch;    // the family: architecture(arch) runs it
  ModelConfig config;
  std::map<std::string, Tensor> weights;
  // Set for GGUF files (tokenizer metadata lives there).
  std::shared_ptr<const gguf::File> gguf;
  // Set for Hugging Face folders: config.json (the converter writes from it).
  std::shared_ptr<const HfConfig> hf;
};

// Reads a llama2.c checkpoint (v0 header: 7 int32 dim, hidden_dim, n_layers, n_heads,
// n_kv_heads, vocab_size (negative = separate classifier), seq_len; then f32 weights).
// The weights borrow the mapped file. The file must be exactly as long as the header says.
ModelFile load_llama2c(const std::string& path);
// The same from `size` bytes at `data`, which `owner` keeps alive (may be null when the
// caller keeps the bytes alive for as long as the weights are used, as a fuzzer does).
// `name` stands for the path in messages.
ModelFile load_llama2c_memory(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                              std::string name);
// Why `data` does not start with a plausible llama2.c v0 header, or "" when it does (used to
// tell a llama2.c checkpoint from other files, which have no magic number to go by).
std::string llama2c_header_problem(const uint8_t* data, size_t size);

// Reads a GGUF file of a supported family (general.architecture).
ModelFile load_gguf(const std::string& path);
// The same from an already parsed GGUF file (also for files parsed from memory).
ModelFile model_from_gguf(std::shared_ptr<const gguf::File> file);
// Reads a Hugging Face model folder (config.json + safetensors) of a supported model_type.
ModelFile load_hf_model(const std::string& dir);
// Picks the reader: a folder is a Hugging Face model, a file goes by its magic. Throws Error
// with a message naming the path.
ModelFile load_model(const std::string& path);

// Checks the model against its family: consistent hyperparameters, and every weight the
// forward pass reads present with the right shape and a float dtype. Error naming the first
// problem ("PATH: missing tensor blk.0.attn_q.weight").
void validate_model(const ModelFile& m);

}  // namespace tapml

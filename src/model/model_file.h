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

namespace tapml {

enum class RopePairing : int {
  Adjacent = 0,  // rotate (x[2i], x[2i+1]): llama2.c, GGUF llama ("norm" rope)
  NeoX = 1,      // rotate (x[i], x[i + rope_dim/2])
};

struct LlamaConfig {
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

struct ModelFile {
  std::string path;
  std::string format;  // "gguf" or "llama2c"
  std::string arch;    // "llama"
  LlamaConfig config;
  std::map<std::string, Tensor> weights;
  // Set for GGUF files (tokenizer metadata lives there).
  std::shared_ptr<const gguf::File> gguf;
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

// Reads a GGUF file whose general.architecture is "llama".
ModelFile load_gguf(const std::string& path);
// The same from an already parsed GGUF file (also for files parsed from memory).
ModelFile model_from_gguf(std::shared_ptr<const gguf::File> file);
// Picks the reader from the file's magic. Throws Error with a message naming the path.
ModelFile load_model(const std::string& path);

// One weight the llama forward pass reads: its GGUF name and [out, in] shape. `norm` marks
// the 1-D normalization weights (converters keep them f32).
struct WeightSpec {
  std::string name;
  Shape shape;
  bool norm = false;
};
// Every weight of a llama model with this config, in GGUF order (token_embd, then per layer
// attention and feed-forward, output_norm, and output unless the classifier is shared).
std::vector<WeightSpec> llama_weight_specs(const LlamaConfig& c);

// Checks that every weight the llama forward pass needs exists with the right shape and a
// supported dtype; throws Error naming the first problem.
void validate_llama(const ModelFile& m);

}  // namespace tapml

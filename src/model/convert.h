// Hugging Face folders into GGUF files as llama.cpp's convert_hf_to_gguf.py writes them, for
// every family TapML reads from folders: the same general.architecture, metadata keys and
// values, tensor names, shapes, dtypes and layouts (Llama's q/k rows permuted for its RoPE,
// fused q/k/v regrouped as llama.cpp wants them, experts stacked, Gemma's norms as 1 + w), with
// tokenizer.ggml.model = "none" and ARCH.vocab_size, which is what llama.cpp needs to load a
// model without a tokenizer (tokenizers are not converted yet). Where llama.cpp cannot express
// the folder's model, the file also carries tapml.* keys (model/decoder.h lists them), so that
// TapML runs the converted file exactly as the folder; the result says what llama.cpp will run
// differently. Where the converter writes a value that llama.cpp cannot load or that is wrong
// for the folder (a constant context or FFN width), the folder's value is written.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/architecture.h"

namespace tapml {

struct ConvertOptions {
  // The dtype of the matrices, as the converter's --outtype: norms, biases, RoPE factors,
  // routers and learned positions stay f32 whatever it is.
  DType dtype = DType::F32;
  // Called as tensor bytes are written: bytes so far, bytes in all, the tensor being written.
  std::function<void(uint64_t done, uint64_t total, const std::string& tensor)> progress;
};

struct ConvertResult {
  std::string family;  // TapML's family ("mistral")
  std::string arch;    // general.architecture written ("llama")
  size_t tensors = 0;
  uint64_t tensor_bytes = 0;
  // What llama.cpp will run differently from the folder (TapML's keys keep TapML exact).
  std::vector<std::string> notes;
};

// Converts the Hugging Face folder `dir` into the GGUF file `out`, written atomically: a
// failure leaves no file. Error for a folder TapML cannot read, or a model that llama.cpp's
// GGUF files cannot hold. The written file is read back and must give the folder's
// hyperparameters and every weight the family reads.
ConvertResult convert_hf_folder(const std::string& dir, const std::string& out,
                                const ConvertOptions& options);

// The first field in which two configurations differ ("rope_base 10000 vs 500000"), or "" when
// they describe the same model. The RoPE pairing is not compared (a GGUF file's q/k row order
// decides it); multipliers compare to 1e-6 relative (GGUF stores them as f32); fields a
// configuration does not use (the experts of a dense model) are not compared.
std::string config_difference(const ModelConfig& a, const ModelConfig& b);

}  // namespace tapml

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
//
// The same converter quantizes: a llama.cpp file type (q8_0, q4_k_m, ...) gives each tensor the
// block type llama-quantize gives it for that file type without an importance matrix, and the
// blocks are ggml's reference quantizers' (core/quant.h), so the file is the one
// `llama-quantize F32.gguf OUT.gguf TYPE` makes from the f32 conversion, tensor for tensor.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "model/architecture.h"

namespace tapml {

// llama.cpp's file types (LLAMA_FTYPE, the value of general.file_type) that convert writes.
enum class FileType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 7,
  Q5_0 = 8,
  Q5_1 = 9,
  Q2_K = 10,
  Q3_K_M = 12,
  Q4_K_M = 15,
  Q5_K_M = 17,
  Q6_K = 18,
  BF16 = 32,
};

// "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_m", "q4_k_m",
// "q5_k_m", "q6_k": the names `tapml convert --dtype` takes, in this order.
const std::vector<std::string>& file_type_names();
std::string_view file_type_name(FileType t);
std::optional<FileType> file_type_from_name(std::string_view name);
// The dtype most matrices get (llama.cpp's default type of the file type): q4_k for q4_k_m.
DType file_type_dtype(FileType t);

// What llama.cpp's choice of a tensor's type depends on beyond its name and shape.
struct QuantModel {
  std::string arch;  // general.architecture ("llama")
  int n_layers = 0;
  int n_heads = 0;     // of layer 0
  int n_kv_heads = 0;  // of layer 0
  int n_experts = 0;   // 0 for a dense model
};
struct QuantTensor {
  std::string name;  // in the GGUF file ("blk.3.attn_v.weight")
  Shape shape;       // outermost first
  DType dtype;       // the type it has unquantized (kept where llama.cpp does not quantize)
};
// The dtype of each tensor (same order) in a file of type `t`: the type llama-quantize
// chooses without an importance matrix or overrides. For f32/f16/bf16 every matrix llama.cpp
// would quantize gets that dtype. convert.cpp states the rule.
// `notes`, when given, receives one line on the tensors whose rows could not take their type's
// blocks and fell back to another type.
std::vector<DType> file_type_dtypes(FileType t, const QuantModel& model,
                                    const std::vector<QuantTensor>& tensors,
                                    std::vector<std::string>* notes = nullptr);

struct ConvertOptions {
  // The dtype of the matrices, as the converter's --outtype: norms, biases, RoPE factors,
  // routers and learned positions stay f32 whatever it is. f32, f16 or bf16.
  DType dtype = DType::F32;
  // A llama.cpp file type to write instead (when set, dtype is not used): the tensors' types
  // are file_type_dtypes' of the f32 conversion.
  std::optional<FileType> file_type;
  // Called as tensor bytes are written: bytes so far, bytes in all, the tensor being written.
  std::function<void(uint64_t done, uint64_t total, const std::string& tensor)> progress;
};

struct ConvertResult {
  std::string family;  // TapML's family ("mistral")
  std::string arch;    // general.architecture written ("llama")
  size_t tensors = 0;
  uint64_t tensor_bytes = 0;
  // How many tensors the file holds of each dtype ("q4_k" -> 12), by dtype name.
  std::map<std::string, size_t> dtypes;
  // What llama.cpp will run differently from the folder (TapML's keys keep TapML exact).
  std::vector<std::string> notes;
};

// Converts the Hugging Face folder `dir` into the GGUF file `out`, written atomically: a
// failure leaves no file. Error for a folder TapML cannot read, or a model that llama.cpp's
// GGUF files cannot hold. The written file is read back and must give the folder's
// hyperparameters and every weight the family reads.
ConvertResult convert_hf_folder(const std::string& dir, const std::string& out,
                                const ConvertOptions& options);

// Rewrites the GGUF model `in` (tensors f32, f16 or bf16) as `out` with the types of
// options' file type, as llama-quantize does: metadata copied, general.file_type and
// general.quantization_version set, every tensor that llama.cpp does not quantize copied as it
// is. Written atomically and read back like convert_hf_folder's file. Error for a file TapML
// cannot run or a tensor already quantized.
ConvertResult convert_gguf_file(const std::string& in, const std::string& out,
                                const ConvertOptions& options);

// The first field in which two configurations differ ("rope_base 10000 vs 500000"), or "" when
// they describe the same model. The RoPE pairing is not compared (a GGUF file's q/k row order
// decides it); multipliers compare to 1e-6 relative (GGUF stores them as f32); fields a
// configuration does not use (the experts of a dense model) are not compared.
std::string config_difference(const ModelConfig& a, const ModelConfig& b);

}  // namespace tapml

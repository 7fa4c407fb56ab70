// A Hugging Face model folder, as `save_pretrained` writes it and as the Hub serves it:
// config.json beside the weights, either one `model.safetensors` or shards listed by
// `model.safetensors.index.json` ({"weight_map": {tensor: shard file}}). A folder with
// neither may hold exactly one other `*.safetensors` file, which is then read.
//
// Opening checks the folder as a whole and throws Error naming the file at fault, on one
// line: config.json missing or not a JSON object; an index without a weight_map of strings,
// naming a shard outside the folder (a path, "..") or one that does not exist, or putting a
// tensor in a shard that lacks it; a tensor in two shards; several .safetensors files and no
// index to choose between them; and every defect of a single file (see safetensors.h).
// Shard files may be symbolic links (the Hub's cache links them into a blob store).
//
// Tensors borrow the memory-mapped files, which stay mapped while any tensor lives.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/tensor.h"
#include "format/safetensors.h"

namespace tapml {

// Where one tensor of the folder lives.
struct HfTensorSource {
  std::string file;                // path of the .safetensors file that holds it
  safetensors::TensorEntry entry;  // its header entry, whatever its dtype
};

struct HfFolder {
  std::string dir;
  nlohmann::json config;  // config.json
  // Every tensor whose dtype TapML reads (F32, F16, BF16, I32), by its name in the files.
  std::map<std::string, Tensor> tensors;
  // Every tensor of the folder, readable or not (an unused I64 or BOOL buffer is fine).
  std::map<std::string, HfTensorSource> sources;

  // The tensor `name`. Throws Error naming the file, the tensor and its dtype when TapML
  // cannot read that dtype, or naming the folder when it has no such tensor; prefer it to
  // `tensors.at()` for that message.
  const Tensor& tensor(const std::string& name) const;
};

// Opens the folder at `dir` (see above).
HfFolder open_hf_folder(const std::string& dir);

// Whether `path` is a directory holding a config.json (false when unreadable).
bool is_hf_folder(const std::string& path);

}  // namespace tapml

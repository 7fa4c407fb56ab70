// Hugging Face model folders as transformers writes them: config.json, read in both of the
// dialects found in the wild, and the safetensors weights, renamed to the GGUF names TapML's
// families use. Each family reads its own config fields (model/families/<name>.cpp); what is
// shared lives here: typed access with the family's defaults, RoPE parameters in either
// dialect, and weights that must all be used.
#pragma once
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "format/hf_folder.h"

namespace tapml {

// config.json. Every accessor names the file and the key in its Error.
class HfConfig {
 public:
  HfConfig(std::shared_ptr<const nlohmann::json> json, std::string path);

  const std::string& path() const { return path_; }
  // Present and not null.
  bool has(const std::string& key) const;
  // A positive integer (at most `max`), `fallback` when absent or null.
  int integer(const std::string& key, std::optional<int> fallback, int max = 1 << 20) const;
  // A non-negative integer.
  int count(const std::string& key, std::optional<int> fallback) const;
  double number(const std::string& key, std::optional<double> fallback) const;
  bool flag(const std::string& key, bool fallback) const;
  std::string text(const std::string& key, std::optional<std::string> fallback) const;
  // The length of a list (0 when absent or null).
  size_t list_size(const std::string& key) const;
  // The first of several spellings of one field that is present (families renamed fields).
  std::string first_of(std::initializer_list<const char*> keys) const;
  // `key` must be absent, null or equal to `allowed`: the field changes the math in a way
  // this family does not implement.
  void require_flag(const std::string& key, bool allowed, const std::string& why) const;

  // RoPE, from `rope_parameters` (transformers 5: {rope_theta, rope_type, ...}, or one such
  // object per layer type) or from `rope_theta` + `rope_scaling` (transformers 4).
  struct Rope {
    double theta = 10000;
    std::string type = "default";  // default, linear or llama3; anything else is refused
    double factor = 1, low_freq_factor = 1, high_freq_factor = 4;
    int original_context = 0;
    std::optional<double> partial_rotary_factor;
  };
  // `layer_type` picks the per-layer-type entry ("sliding_attention") where there is one;
  // `default_theta` is the family's default base.
  Rope rope(double default_theta, const std::string& layer_type = "") const;
  // `layer_types` (one per layer), or empty when absent; each is full_attention or
  // sliding_attention.
  std::vector<std::string> layer_types(int n_layers) const;

  [[noreturn]] void fail(const std::string& what) const;

 private:
  const nlohmann::json* find(const std::string& key) const;
  int whole(const std::string& key, std::optional<int> fallback, int64_t lo, int64_t hi) const;
  std::shared_ptr<const nlohmann::json> json_;
  std::string path_;
};

// The folder's tensors by their Hugging Face names. A family takes each one it uses; finish()
// refuses a folder with tensors no one took, since a weight ignored is a model run wrong.
class HfWeights {
 public:
  explicit HfWeights(const HfFolder& folder);

  bool has(const std::string& name) const { return folder_.sources.count(name) > 0; }
  const Tensor& peek(const std::string& name) const;
  // As stored.
  Tensor take(const std::string& name);
  // Converted to f32, with `add` added to every element (Gemma's norms store w - 1).
  Tensor take_f32(const std::string& name, float add = 0);
  // A 2-D [in, out] tensor (GPT-2's Conv1D) as [out, in].
  Tensor take_transposed(const std::string& name);
  // Several tensors of one dtype and shape stacked along a new first dimension (experts).
  Tensor take_stacked(const std::vector<std::string>& names);
  // Every tensor taken, except those whose name ends with one of `ignorable` (buffers
  // transformers recomputes, such as rotary inv_freq); Error naming the rest.
  void finish(const std::vector<std::string>& ignorable = {}) const;

 private:
  const HfFolder& folder_;
  std::set<std::string> taken_;
};

// Rows of a matrix regrouped: out = concatenation of `blocks` (each {first row, row count})
// of `t`, same dtype. For fused projections stored head by head.
Tensor gather_rows(const Tensor& t, const std::vector<std::pair<int64_t, int64_t>>& blocks);

// Llama 3.1's frequency divisors (GGUF rope_freqs.weight), one per rotated pair.
Tensor llama3_rope_freqs(const HfConfig::Rope& rope, int rope_dim);

}  // namespace tapml

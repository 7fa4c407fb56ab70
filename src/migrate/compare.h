// The compare workflow: run the model on the source over some prompts (greedy generation)
// with an IsolatedComparator attached, so every op call is also run on the target with the
// source's inputs and judged on its own. The result is one entry per site: the worst call,
// failures, and the calls the target could not run (coverage).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "migrate/isolated.h"
#include "model/model_file.h"
#include "runtime/device_pool.h"

namespace tapml {

struct CompareOptions {
  std::string source = "ref", target;
  std::string site_regex;                 // only these sites (searched); empty: all
  std::vector<std::vector<int>> prompts;  // token ids, BOS first
  std::vector<int> stop_tokens;
  int steps = 64;               // positions per prompt, prompt included
  DType kv_cache = DType::F32;  // the source run's KV cache (f16: half precision)
  // Called now and then with (prompt index, prompt count, tokens produced, calls compared).
  std::function<void(size_t, size_t, int, int64_t)> progress;
  // The process's devices; null: the comparison opens its own.
  DevicePool* pool = nullptr;
};

struct CompareReport {
  std::string model, source, target;
  std::vector<std::string> prompt_texts;  // filled by the caller, for the report
  int steps = 0;
  std::string kv_cache = "f32";  // the source run's KV cache dtype
  std::vector<SiteLocal> sites;  // in first-call order
  int64_t calls_compared = 0;

  int64_t sites_compared() const;        // sites with at least one compared call
  int64_t sites_failed() const;          // sites with a failed call
  int64_t sites_not_comparable() const;  // sites with a call the target refused
  bool pass() const { return sites_failed() == 0; }
};

CompareReport compare_model(const ModelFile& model, const CompareOptions& options);

}  // namespace tapml

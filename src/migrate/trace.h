// End-to-end runs for migration: the source generates greedily once; every other placement
// is then run teacher-forced on the source's token sequence, so the logits of every position
// can be compared one to one even after a broken target would have chosen other tokens.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/model_file.h"
#include "runtime/device_pool.h"
#include "runtime/dispatcher.h"
#include "runtime/placement.h"

namespace tapml {

struct SiteInfo {
  Site site;
  Op op = Op::Add;
  bool target_supports = true;
  std::string unsupported_reason;
};

// One placement's run over one token sequence.
struct Trace {
  std::vector<std::vector<float>> logits;  // one row per position
  // When captured: every call's outputs, by call index, with its site.
  std::vector<std::pair<std::string, std::vector<Tensor>>> calls;
};

// The sequence the source produces: prompt ids, then greedy ids up to `steps` positions.
// Every run keeps its KV cache as `kv_cache` (f32 or f16).
std::vector<int> source_sequence(const ModelFile& model, DevicePool& pool, DType kv_cache,
                                 const std::string& source, const std::vector<int>& prompt,
                                 int steps, const std::vector<int>& stop_tokens);

// Runs `sequence` teacher-forced: the first `prompt_len` ids as one prefill batch, then one
// id per decode step, keeping every position's logits (the last id is not fed).
// `observer`, when given, watches every call of the run; `on_position` hears the number of
// positions done after the prefill and after each decode step.
Trace run_trace(const ModelFile& model, DevicePool& pool, DType kv_cache,
                const Placement& placement, const std::vector<int>& sequence, int prompt_len,
                bool capture_calls, CallObserver* observer = nullptr,
                const std::function<void(int)>& on_position = {});

// Every site of the model in first-call order, with whether `target` can run its calls.
std::vector<SiteInfo> list_sites(const ModelFile& model, DevicePool& pool, DType kv_cache,
                                 const std::string& source, const std::string& target,
                                 const std::vector<int>& sequence, int prompt_len);

// Logits of a target run against the source's, position by position.
struct EndToEnd {
  double nmse = 0;  // worst over positions: sum (t - s)^2 / sum s^2
  double kl = 0;    // worst over positions: KL(softmax(s) || softmax(t))
  int top1_matching = 0, positions = 0;
  int first_mismatch = -1;  // first position whose argmax differs, -1 if none
  bool finite = true;       // no NaN or Inf in the target's logits
  double top1() const { return positions ? double(top1_matching) / positions : 1.0; }
  // Combines the results of several prompts (worst of each measure).
  void merge(const EndToEnd& o);
};

EndToEnd compare_logits(const Trace& source, const Trace& target);

}  // namespace tapml

// Migration: run the model with some sites on the target and the rest on the source, move
// more over step by step, and watch the end-to-end output against the all-source run. When a
// step breaks the output, the culprit is among the sites it moved; delta debugging narrows
// them to a minimal failing set, and isolated comparison (each call fed the source's inputs)
// separates an op's own error from error it inherited.
//
// A placement passes when, over every prompt, the target run's logits stay finite, pick the
// same top-1 token at every position, and their normalized MSE stays within a threshold
// calibrated like the oracle's: a multiple of the NMSE of a plain-f32 run (ref?acc=f32;
// ref?acc=q8, which also rounds activations to 8 bits, for a model with quantized weights).
//
// `auto` does not stop at the first step that breaks the output: that step's group stays on
// the source and the walk goes on, so every independent culprit is found in one run; each
// failing group is then bisected on its own. `kinds` and `layers` stop there and list the
// groups they did not run. The verdict's status follows the end-to-end output alone; besides
// the culprits it lists every other site that fails in isolation as *latent* (wrong alone,
// yet the output stays within the threshold: a bug that another model or prompt may meet).
//
// Culprits that share a cause are grouped (group_by_cause): sites of one op are one group
// (one kernel), and ops whose failing calls all read model weights of one stored type other
// than f32 are one group ("f16 weights (embedding, matmul)": a reader of that type that the
// ops share). f32 weights need no decoding, so sharing them says nothing about a cause.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "check/oracle.h"
#include "core/dtype.h"
#include "migrate/trace.h"
#include "model/model_file.h"
#include "runtime/device_pool.h"

namespace tapml {

struct MigrateOptions {
  std::string source = "ref";
  std::string target;
  std::string strategy = "auto";          // kinds | layers | bisect | auto
  std::vector<std::vector<int>> prompts;  // token ids, BOS first
  std::vector<int> stop_tokens;
  int steps = 64;
  DType kv_cache = DType::F32;  // every run's KV cache (f16: half precision)
  double nmse_threshold = 0;    // 0: calibrate
  double noise_multiple = 100;
  // A model with quantized weights: the threshold is this many times the NMSE of
  // ref?acc=q8 (twice its error, the oracle's activation_multiple, squared), not
  // noise_multiple times it: 8-bit activations are already most of a correct run's error.
  double activation_nmse_multiple = 4;
  std::function<void(const std::string&)> progress;  // one line per event
  // Work within a run: (what runs, positions done, positions in all of its prompts).
  std::function<void(const std::string&, int64_t, int64_t)> on_positions;
  // The process's devices (each opened once, weights uploaded once); null: the migration
  // opens its own.
  DevicePool* pool = nullptr;
};

struct MigrationStep {
  int step = 0;
  std::string label;
  std::vector<std::string> target_sites;
  EndToEnd e2e;
  bool pass = false;
  double seconds = 0;
  // Labels of the groups that broke the output at earlier steps and stay on the source (auto).
  std::vector<std::string> kept_on_source;
};

struct SiteAttribution {
  SiteInfo info;
  bool compared = false;   // isolated comparison ran
  double local_ratio = 0;  // worst isolated error / tolerance (inf for NaN/Inf/guard)
  double local_error = 0;  // worst isolated E
  std::string local_check = "pass";
  int64_t calls = 0, failed = 0;
  double propagated_error = 0;  // worst E of this site's outputs with everything on the target
  bool propagated_measured = false;
  // The weight types its failed calls read, and whether one read none (SiteLocal's).
  std::vector<DType> failed_weight_dtypes;
  bool failed_without_weight = false;
};

// A site named by the verdict: a culprit, or a latent failure.
struct Culprit {
  std::string site;  // canonical form
  Op op = Op::Add;
  std::string evidence;
  int group = -1;  // its CauseGroup: in MigrateReport::groups, or latent_groups when latent
};

// Named sites that share a cause (see group_by_cause).
struct CauseGroup {
  std::string label;         // "f16 weights (embedding, matmul)", "rope"
  std::string cause;         // "weight_dtype" | "op"
  DType dtype = DType::F32;  // the weight type, for cause "weight_dtype"
  std::vector<Op> ops;       // in first-named order
  std::vector<std::string> sites;
};

// One delta-debugging search inside a group whose step broke the output.
struct Bisection {
  std::string label;  // the group's ("kinds: matmul")
  int candidates = 0, runs = 0;
  std::vector<std::string> culprits;
};

struct MigrateReport {
  std::string model, source, target, strategy;
  std::vector<std::string> prompt_texts;
  int steps = 0;
  std::string kv_cache = "f32";  // every run's KV cache dtype
  double nmse_threshold = 0, noise_nmse = 0;
  std::vector<MigrationStep> timeline;
  // Totals over `bisections` (one per group that broke the output).
  int bisect_runs = 0, bisect_candidates = 0;
  std::vector<std::string> bisect_culprits;
  std::vector<Bisection> bisections;
  std::vector<SiteAttribution> sites;
  std::string status = "pass";  // pass | fail: the end-to-end output alone
  std::vector<Culprit> culprits;
  std::vector<Op> culprit_ops;
  std::vector<CauseGroup> groups;  // the culprits' causes
  // Sites that fail in isolation and are not culprits, with what the end-to-end runs showed
  // of them (the output passed with them on the target, or they were not run: evidence says).
  std::vector<Culprit> latent;
  std::vector<CauseGroup> latent_groups;
  // The strategy's groups never moved to the target (kinds and layers stop at a failure).
  std::vector<std::string> untested;
  std::string summary;
  int runs = 0;  // end-to-end runs made (the source's excluded)
  double seconds = 0;
};

MigrateReport migrate(const ModelFile& model, const MigrateOptions& options);

// Groups `named` by cause and sets each one's `group` to its index in the result: ops whose
// named sites' failed calls all read weights of one type other than f32, two ops or more
// sharing that type, form one "weight_dtype" group; every other op is an "op" group of its own.
// Groups come in the order of their first named site; `sites` supplies the weight types.
std::vector<CauseGroup> group_by_cause(std::vector<Culprit>& named,
                                       const std::vector<SiteAttribution>& sites);

// Delta debugging (ddmin): a minimal subset of `candidates` that still fails `fails`, given
// that all of them together fail. `fails` is called with subsets; `runs` counts the calls.
std::vector<std::string> minimal_failing_set(
    const std::vector<std::string>& candidates,
    const std::function<bool(const std::vector<std::string>&)>& fails, int* runs);

}  // namespace tapml

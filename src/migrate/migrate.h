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
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "check/oracle.h"
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
  double nmse_threshold = 0;  // 0: calibrate
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
};

struct Culprit {
  std::string site;  // canonical form
  Op op = Op::Add;
  std::string evidence;
};

struct MigrateReport {
  std::string model, source, target, strategy;
  std::vector<std::string> prompt_texts;
  int steps = 0;
  double nmse_threshold = 0, noise_nmse = 0;
  std::vector<MigrationStep> timeline;
  int bisect_runs = 0, bisect_candidates = 0;
  std::vector<std::string> bisect_culprits;
  std::vector<SiteAttribution> sites;
  std::string status = "pass";  // pass | fail
  std::vector<Culprit> culprits;
  std::vector<Op> culprit_ops;
  std::string summary;
  int runs = 0;  // end-to-end runs made (the source's excluded)
  double seconds = 0;
};

MigrateReport migrate(const ModelFile& model, const MigrateOptions& options);

// Delta debugging (ddmin): a minimal subset of `candidates` that still fails `fails`, given
// that all of them together fail. `fails` is called with subsets; `runs` counts the calls.
std::vector<std::string> minimal_failing_set(
    const std::vector<std::string>& candidates,
    const std::function<bool(const std::vector<std::string>&)>& fails, int* runs);

}  // namespace tapml

// Replay: runs carved tests on a backend and judges them with the oracle; also the things a
// test needs besides a carve: its noise floor (the same call computed with plain f32
// accumulation), a bottom-up "synthetic" twin with uniform random inputs, and its stress
// variants (replay/stress.h), whose results are kept apart from the verdict.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "carve/test_case.h"
#include "check/oracle.h"
#include "replay/stress.h"
#include "runtime/device_pool.h"

namespace tapml {

struct TestResult {
  int64_t id = 0;
  Op op = Op::Add;
  std::string site, phase;
  bool pass = false;
  Verdict verdict;
  std::string error;  // set when the backend failed the call (then pass = false)
  // Why the backend refused the call (its supports() said no): coverage, not a failure.
  // Then pass = false and error is empty.
  std::string not_offered;
  bool failed() const { return !pass && not_offered.empty(); }
  // A synthetic twin (carve --cover: a carved test narrowed to a shape the model never
  // produced), reported apart from the carved calls.
  bool twin = false;
  double seconds = 0;
};

// One stress variant of a carved test, judged like the test; robustness, not the verdict.
struct StressResult {
  TestResult result;        // id, op, site and phase are the carved test's
  std::string variant;      // StressVariant::name()
  ValueRange range;         // the stressed quantity's values in the variant
  ValueRange carved_range;  // the same in the carved test
  std::string skipped;      // why the variant was not judged, or ""
  bool failed() const { return skipped.empty() && result.failed(); }
};

// One replay of (a shard of) a corpus on a backend.
struct ReplayRun {
  std::string corpus, backend;
  bool synthetic = false;
  int shard = 1, shards = 1;
  std::vector<TestResult> results;
  // The stress variants asked for (their names), and one result per test and variant that
  // applies to it.
  std::vector<std::string> stress_variants;
  std::vector<StressResult> stress;
};

struct ReplayOptions {
  std::string op_regex, site_regex;
  std::vector<int64_t> ids;   // only these tests (they must match the filters)
  int shard = 1, shards = 1;  // every shards-th test, starting at shard - 1
  bool synthetic = false;
  uint64_t seed = 1;
  // Stress variants to run after each carved test (not with synthetic).
  std::vector<StressVariant> stress;
  bool fail_fast = false;
  // Replay a corpus whose carve did not finish, or one with no tests (else an Error).
  bool allow_partial = false;
  // Called after each test with (done, total, result).
  std::function<void(size_t, size_t, const TestResult&)> on_result;
  // The process's devices; null: the replay opens its own.
  DevicePool* pool = nullptr;
};

// Replays the selected tests of `corpus` (opened from `corpus_path`) on `target`.
ReplayRun replay_corpus(const std::string& corpus_path, const std::string& target_uri,
                        const ReplayOptions& options);

// Runs `test` on `target` (outputs guarded and poisoned) and judges it against the test's
// expected outputs and noise floors. Never throws for a failing backend: the error becomes
// the result.
TestResult replay_test(Backend& target, const TestCase& test, const TolerancePolicy& policy);

// Fills test.noise: the oracle's error of `plain_f32` (kNoiseReference) against test.outputs.
// Returns the outputs `plain_f32` computed.
std::vector<Tensor> calibrate_noise(TestCase& test, Backend& plain_f32);

// The same signature with inputs drawn uniformly from [-1, 1] (float tensors, rounded to
// their dtype; token ids uniform over the table; positions, rope's freq_factors and
// moe_ffn's route kept), outputs computed on
// `source` and noise on `plain_f32`. Deterministic in (test, seed).
TestCase synthesize(const TestCase& carved, uint64_t seed, Backend& source, Backend& plain_f32);

}  // namespace tapml

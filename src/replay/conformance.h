// The conformance suite: every catalog op, every input-dtype combination the catalog allows
// it, every sample call the catalog gives for that combination (OpDef::examples: vector
// tails, long reductions, large magnitudes, the f16 range, long attention prefixes), run on
// a target backend and judged by the oracle against the source (ref), each case calibrated
// by its own noise floor (the same call on ref?acc=f32). What a backend refuses is recorded
// as "not offered" with its reason: coverage, not a failure. The same seed gives the same
// inputs, whatever the op filter, so `--op` reruns exactly the cases of a full run.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "carve/test_case.h"
#include "check/oracle.h"

namespace tapml {

enum class CaseStatus { Pass, Fail, NotOffered };
const char* case_status_name(CaseStatus s);  // "pass", "fail", "not offered"

struct ConformanceResult {
  Op op = Op::Add;
  std::string dtypes;  // every input's dtype: "x=f32 w=f16"
  std::string label;   // the example's: "K=4099 long reduction with a tail"
  CaseStatus status = CaseStatus::Pass;
  // The oracle's deciding check ("pass", "numeric", "nan", ...), "error" when the target
  // threw, "not offered" when it refused the call.
  std::string check;
  double ratio = 0;    // worst error / tolerance; +inf for a failure of another check or an error
  std::string detail;  // the verdict's line, the target's error, or why it is not offered
  Verdict verdict;     // empty unless judged
  double seconds = 0;  // on the target
};

struct ConformanceRun {
  std::string backend;  // the target's URI
  std::string device;   // the target's description
  uint64_t seed = 1;
  std::string op_regex;
  std::vector<ConformanceResult> results;  // catalog order, then dtypes, then examples
};

// One line of the table: an op with one dtype combination.
struct ConformanceGroup {
  Op op = Op::Add;
  std::string dtypes;
  int64_t cases = 0, passed = 0, failed = 0, not_offered = 0;
  double worst_ratio = 0;  // over judged cases (+inf when one failed another check or threw)
  std::string not_offered_reason;  // the first refusal's reason
};
// In the order of the results.
std::vector<ConformanceGroup> summarize(const ConformanceRun& run);

struct ConformanceTotals {
  int64_t cases = 0, passed = 0, failed = 0, not_offered = 0;
};
ConformanceTotals totals(const ConformanceRun& run);

struct ConformanceOptions {
  std::string op_regex;  // ECMAScript, searched in the op name; empty: every op
  uint64_t seed = 1;
  // Called after each case with (done, total, result).
  std::function<void(size_t, size_t, const ConformanceResult&)> on_result;
};

// The cases of one seed and op filter. The source's outputs and noise floors are computed
// the first time a target is offered a case and kept, so several targets share them.
class ConformanceSuite {
 public:
  // Draws every example (no backend runs yet); Error for an invalid regex or a filter that
  // matches no op. `source` and `noise` must outlive the suite.
  ConformanceSuite(Backend& source, Backend& noise, const ConformanceOptions& options);
  size_t size() const { return cases_.size(); }
  // Runs every case on `target`. Never throws for a failing target: its errors become
  // results. Throws Error if the source or the noise backend cannot run a case (a broken
  // example).
  ConformanceRun run(Backend& target);

 private:
  struct Case {
    std::string dtypes, label;
    TestCase test;  // inputs; outputs and noise once prepared
    bool prepared = false;
  };
  void prepare(Case& c);

  Backend& source_;
  Backend& noise_;
  ConformanceOptions options_;
  std::vector<Case> cases_;
};

// One run: the suite built on `source` and `noise` and run on `target`.
ConformanceRun run_conformance(Backend& target, Backend& source, Backend& noise,
                               const ConformanceOptions& options);
// The same with the target opened from its URI, against ref and ref?acc=f32.
ConformanceRun run_conformance(const std::string& target_uri, const ConformanceOptions& options);

}  // namespace tapml

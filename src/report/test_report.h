// Reports of a replay: the canonical JSON (versioned; shards of one corpus merge by
// concatenating their results), a per-op summary, and JUnit XML for CI dashboards. Stress
// variants (robustness) are reported in a section of their own in each, apart from the
// verdict.
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "replay/replay.h"
#include "report/junit.h"

namespace tapml {

struct OpSummary {
  int64_t tests = 0, passed = 0, failed = 0, not_offered = 0;
  double worst_ratio = 0;  // the largest error as a multiple of its tolerance
};

std::map<std::string, OpSummary> summarize(const std::vector<TestResult>& results);

// The stress variants of one op at one variant name.
struct RobustnessRow {
  std::string op, variant;
  int64_t tests = 0, passed = 0, failed = 0, skipped = 0, not_offered = 0;
  ValueRange range;         // the stressed quantity's values over the variants
  ValueRange carved_range;  // the same over the op's carved tests: its own range
  double worst_ratio = 0;   // of the judged variants
  std::string first_check;  // the deciding check of the first failing variant
};
// By op (alphabetical), then variant in the order the run asked for them.
std::vector<RobustnessRow> summarize_robustness(const ReplayRun& run);

// Version 2 added the "robustness" section (present when stress variants ran).
constexpr int kTestReportVersion = 2;
nlohmann::json to_json(const ReplayRun& run);
// Reads a report written by to_json. Error for another format or version.
ReplayRun replay_run_from_json(const nlohmann::json& j, const std::string& from);
// Combines shard reports of one corpus and backend. Error if they disagree or overlap.
ReplayRun merge_runs(const std::vector<ReplayRun>& shards);

struct JunitOptions {
  // The seed of a synthetic run's inputs, for the replay commands (a ReplayRun does not
  // carry it). Unset for a synthetic run: the command leaves --seed out and says so.
  std::optional<uint64_t> seed;
  JunitStamp stamp = JunitStamp::now();
  // A failing stress variant is a <failure> (else a <skipped> case saying it failed, so that
  // robustness shows on a dashboard without turning a correct deployment red).
  bool stress_strict = false;
};
// One testsuite per op, one testcase per test; a failure's body holds its detail and the
// command that replays just that test. Stress variants, when they ran, are suites of their
// own: "robustness.OP", one testcase per test and variant.
std::string junit_xml(const ReplayRun& run, const JunitOptions& options = {});

// The per-op table `tapml test` prints (tests, passed, failed, worst error / tolerance) and
// a closing count.
std::string summary_text(const ReplayRun& run);
// The command that replays just this test: `tapml test --corpus C --backend B --id N`, with
// `--synthetic --seed S` for a synthetic run, `--stress VARIANT` for a stress variant.
std::string replay_command(const TestResult& r, const std::string& corpus,
                           const std::string& backend, bool synthetic, uint64_t seed,
                           const std::string& stress_variant = "");
// One failed test as `tapml test` reports it, with the command that replays just that test
// (`corpus`, `backend`, and the seed when the run was synthetic).
std::string failure_text(const TestResult& r, const std::string& corpus, const std::string& backend,
                         bool synthetic, uint64_t seed);
// The robustness section `tapml test --stress` prints after the verdict: a table per op and
// variant (its own carved range first), one line per op saying up to where it holds, a
// closing count; then the first failing test of each op and variant (at most
// `max_failures`, 0: all), each with the command that replays it. "" when no stress ran.
std::string robustness_text(const ReplayRun& run, int max_failures);
// Reads a report file written by to_json (Error naming the file otherwise).
ReplayRun read_replay_report(const std::string& path);

}  // namespace tapml

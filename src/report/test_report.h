// Reports of a replay: the canonical JSON (versioned; shards of one corpus merge by
// concatenating their results), a per-op summary, and JUnit XML for CI dashboards.
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

constexpr int kTestReportVersion = 1;
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
};
// One testsuite per op, one testcase per test; a failure's body holds its detail and the
// command that replays just that test.
std::string junit_xml(const ReplayRun& run, const JunitOptions& options = {});

// The per-op table `tapml test` prints (tests, passed, failed, worst error / tolerance) and
// a closing count.
std::string summary_text(const ReplayRun& run);
// The command that replays just this test: `tapml test --corpus C --backend B --id N`, with
// `--synthetic --seed S` for a synthetic run.
std::string replay_command(const TestResult& r, const std::string& corpus,
                           const std::string& backend, bool synthetic, uint64_t seed);
// One failed test as `tapml test` reports it, with the command that replays just that test
// (`corpus`, `backend`, and the seed when the run was synthetic).
std::string failure_text(const TestResult& r, const std::string& corpus, const std::string& backend,
                         bool synthetic, uint64_t seed);
// Reads a report file written by to_json (Error naming the file otherwise).
ReplayRun read_replay_report(const std::string& path);

}  // namespace tapml

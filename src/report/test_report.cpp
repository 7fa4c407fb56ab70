#include "report/test_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>

#include "core/error.h"
#include "report/command_line.h"

namespace tapml {

std::map<std::string, OpSummary> summarize(const std::vector<TestResult>& results) {
  std::map<std::string, OpSummary> out;
  for (const TestResult& r : results) {
    OpSummary& s = out[std::string(op_name(r.op))];
    s.tests++;
    (r.pass ? s.passed : r.failed() ? s.failed : s.not_offered)++;
    s.worst_ratio = std::max(s.worst_ratio, r.verdict.worst_ratio);
  }
  return out;
}

namespace {

struct TwinCount {
  int64_t tests = 0, failed = 0;
};
TwinCount count_twins(const std::vector<TestResult>& results) {
  TwinCount n;
  for (const TestResult& r : results)
    if (r.twin) {
      n.tests++;
      n.failed += r.failed();
    }
  return n;
}

}  // namespace

nlohmann::json to_json(const ReplayRun& run) {
  nlohmann::json tests = nlohmann::json::array();
  for (const TestResult& r : run.results) {
    nlohmann::json t{{"id", r.id},
                     {"op", std::string(op_name(r.op))},
                     {"site", r.site},
                     {"phase", r.phase},
                     {"pass", r.pass},
                     {"check", check_name(r.verdict.failed)},
                     {"ratio", r.verdict.worst_ratio},
                     {"detail", !r.not_offered.empty() ? r.not_offered
                                : r.error.empty()      ? r.verdict.detail
                                                       : r.error},
                     {"seconds", r.seconds}};
    if (!r.error.empty()) t["check"] = "error";
    if (!r.not_offered.empty()) t["check"] = "not offered";
    if (r.twin) t["twin"] = true;
    nlohmann::json outs = nlohmann::json::array();
    for (const OutputVerdict& o : r.verdict.outputs)
      outs.push_back({{"check", check_name(o.failed)},
                      {"error", o.metrics.error},
                      {"tolerance", o.tolerance},
                      {"ratio", o.ratio},
                      {"noise", o.noise},
                      {"noise_multiple", o.noise_multiple},
                      {"max_abs", o.metrics.max_abs},
                      {"max_rel", o.metrics.max_rel},
                      {"nmse", o.metrics.nmse},
                      {"cosine", o.metrics.cosine},
                      {"frac_out", o.metrics.frac_out},
                      {"nan", o.metrics.nan},
                      {"pos_inf", o.metrics.pos_inf},
                      {"neg_inf", o.metrics.neg_inf}});
    t["outputs"] = outs;
    tests.push_back(t);
  }
  nlohmann::json per_op = nlohmann::json::object();
  int64_t failed = 0, not_offered = 0;
  for (auto& [op, s] : summarize(run.results)) {
    per_op[op] = {{"tests", s.tests},
                  {"passed", s.passed},
                  {"failed", s.failed},
                  {"not_offered", s.not_offered},
                  {"worst_ratio", s.worst_ratio}};
    failed += s.failed;
    not_offered += s.not_offered;
  }
  nlohmann::json summary = {{"tests", run.results.size()},
                            {"failed", failed},
                            {"not_offered", not_offered},
                            {"per_op", per_op}};
  if (TwinCount n = count_twins(run.results); n.tests > 0)
    summary["twins"] = {{"tests", n.tests}, {"failed", n.failed}};
  return {{"format", "tapml-test-report"},
          {"version", kTestReportVersion},
          {"corpus", run.corpus},
          {"backend", run.backend},
          {"synthetic", run.synthetic},
          {"shard", run.shard},
          {"shards", run.shards},
          {"summary", summary},
          {"tests", tests}};
}

ReplayRun replay_run_from_json(const nlohmann::json& j, const std::string& from) {
  try {
    TAPML_REQUIRE(j.value("format", "") == "tapml-test-report", from + ": not a tapml test report");
    int version = j.at("version");
    TAPML_REQUIRE(version == kTestReportVersion,
                  from + ": report version " + std::to_string(version) + ", this build reads " +
                      std::to_string(kTestReportVersion));
    ReplayRun run;
    run.corpus = j.at("corpus");
    run.backend = j.at("backend");
    run.synthetic = j.at("synthetic");
    run.shard = j.at("shard");
    run.shards = j.at("shards");
    for (const auto& t : j.at("tests")) {
      TestResult r;
      r.id = t.at("id");
      r.op = parse_op(t.at("op").get<std::string>());
      r.site = t.at("site");
      r.phase = t.at("phase");
      r.pass = t.at("pass");
      r.twin = t.value("twin", false);  // absent from reports of corpora without twins
      r.seconds = t.at("seconds");
      r.verdict.pass = r.pass;
      // JSON has no infinity: a non-numeric failure's ratio is written as null.
      r.verdict.worst_ratio = t.at("ratio").is_null() ? INFINITY : t.at("ratio").get<double>();
      std::string check = t.at("check");
      if (check == "error")
        r.error = t.at("detail");
      else if (check == "not offered")
        r.not_offered = t.at("detail");
      else
        r.verdict.detail = t.at("detail");
      for (CheckKind k : {CheckKind::Pass, CheckKind::Shape, CheckKind::Dtype, CheckKind::Guard,
                          CheckKind::NaN, CheckKind::Inf, CheckKind::Numeric, CheckKind::Exact})
        if (check == check_name(k)) r.verdict.failed = k;
      run.results.push_back(std::move(r));
    }
    return run;
  } catch (const nlohmann::json::exception& e) {
    throw Error(from + ": malformed test report (" + e.what() + ")");
  }
}

ReplayRun merge_runs(const std::vector<ReplayRun>& shards) {
  TAPML_REQUIRE(!shards.empty(), "nothing to merge");
  ReplayRun all = shards[0];
  all.results.clear();
  all.shard = 1;
  all.shards = 1;
  std::set<int64_t> seen;
  for (const ReplayRun& s : shards) {
    TAPML_REQUIRE(
        s.corpus == all.corpus && s.backend == all.backend && s.synthetic == all.synthetic,
        "reports to merge come from different runs (" + s.corpus + " on " + s.backend + " vs " +
            all.corpus + " on " + all.backend + ")");
    for (const TestResult& r : s.results) {
      TAPML_REQUIRE(seen.insert(r.id).second,
                    "test " + std::to_string(r.id) + " appears in two reports to merge");
      all.results.push_back(r);
    }
  }
  std::sort(all.results.begin(), all.results.end(),
            [](const TestResult& a, const TestResult& b) { return a.id < b.id; });
  return all;
}

namespace {

std::string failure_what(const TestResult& r) {
  return r.error.empty() ? std::string(check_name(r.verdict.failed)) + ": " + r.verdict.detail
                         : "error: " + r.error;
}

}  // namespace

std::string junit_xml(const ReplayRun& run, const JunitOptions& options) {
  std::map<std::string, JunitSuite> by_op;
  for (const TestResult& r : run.results) {
    std::string op(op_name(r.op));
    JunitSuite& suite = by_op[op];
    suite.name = op;
    JunitCase c;
    c.classname = op;
    c.name = "#" + std::to_string(r.id) + " " + r.site + " " + r.phase + (r.twin ? " twin" : "");
    c.seconds = r.seconds;
    if (!r.not_offered.empty()) {
      c.outcome = JunitOutcome::Skipped;
      c.message = "not offered: " + r.not_offered;
    } else if (!r.pass) {
      c.outcome = JunitOutcome::Failure;
      c.type = r.error.empty() ? check_name(r.verdict.failed) : "error";
      c.message = r.error.empty() ? r.verdict.detail : r.error;
      // A synthetic run's seed is not in the report: without it the command says so rather
      // than guess.
      bool seed_known = !run.synthetic || options.seed;
      c.body = failure_what(r) + "\ntest #" + std::to_string(r.id) + " at " + r.site + " (" + op +
               ", " + r.phase + ")\nreplay: " +
               replay_command(r, run.corpus, run.backend, run.synthetic && seed_known,
                              options.seed.value_or(1));
      if (!seed_known)
        c.body +=
            " --synthetic\n(the seed of the synthetic inputs is not in this report: add --seed S "
            "if the run was given one)";
      c.body += "\n";
    }
    suite.cases.push_back(std::move(c));
  }
  std::vector<JunitSuite> suites;
  for (auto& [op, suite] : by_op) suites.push_back(std::move(suite));
  return junit_document("tapml " + run.backend, suites, options.stamp);
}

std::string summary_text(const ReplayRun& run) {
  int64_t failed = 0, total = 0, not_offered = 0;
  std::string refused;  // the first refusal's reason
  for (const TestResult& r : run.results)
    if (!r.not_offered.empty() && refused.empty()) refused = r.not_offered;
  char line[256];
  std::snprintf(line, sizeof line, "%-10s %7s %7s %7s %12s\n", "op", "tests", "passed", "failed",
                "worst/tol");
  std::string out = line;
  for (auto& [op, s] : summarize(run.results)) {
    std::snprintf(line, sizeof line, "%-10s %7lld %7lld %7lld %12.3g\n", op.c_str(),
                  (long long)s.tests, (long long)s.passed, (long long)s.failed, s.worst_ratio);
    out += line;
    failed += s.failed;
    total += s.tests;
    not_offered += s.not_offered;
  }
  std::snprintf(line, sizeof line, "%lld passed, %lld failed",
                (long long)(total - failed - not_offered), (long long)failed);
  out += line;
  if (not_offered > 0)
    out += ", " + std::to_string(not_offered) +
           " not offered (refused by the backend: not failures; first: " + refused + ")";
  if (TwinCount n = count_twins(run.results); n.tests > 0)
    out += "\n" + std::to_string(n.tests) +
           " of the tests are synthetic twins (carve --cover: carved tests narrowed to shapes "
           "the model never has), " +
           std::to_string(n.failed) + " of them failed";
  return out + "\n";
}

std::string replay_command(const TestResult& r, const std::string& corpus,
                           const std::string& backend, bool synthetic, uint64_t seed) {
  return "tapml test --corpus " + shell_quote(corpus) + " --backend " + shell_quote(backend) +
         " --id " + std::to_string(r.id) +
         (synthetic ? " --synthetic --seed " + std::to_string(seed) : "");
}

std::string failure_text(const TestResult& r, const std::string& corpus, const std::string& backend,
                         bool synthetic, uint64_t seed) {
  return "FAIL #" + std::to_string(r.id) + " " + r.site + " (" + std::string(op_name(r.op)) + ", " +
         r.phase + (r.twin ? ", synthetic twin" : "") + "): " + failure_what(r) +
         "\n  replay: " + replay_command(r, corpus, backend, synthetic, seed) + "\n";
}

ReplayRun read_replay_report(const std::string& path) {
  std::ifstream f(path);
  TAPML_REQUIRE(bool(f), path + ": cannot read");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not JSON (" + e.what() + ")");
  }
  return replay_run_from_json(j, path);
}

}  // namespace tapml

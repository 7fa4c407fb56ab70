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

nlohmann::json result_json(const TestResult& r) {
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
  return t;
}

TestResult result_from_json(const nlohmann::json& t) {
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
  return r;
}

nlohmann::json robustness_json(const ReplayRun& run) {
  nlohmann::json tests = nlohmann::json::array();
  for (const StressResult& s : run.stress) {
    nlohmann::json t = result_json(s.result);
    t["variant"] = s.variant;
    t["range"] = {s.range.low, s.range.high};
    t["carved_range"] = {s.carved_range.low, s.carved_range.high};
    t["skipped"] = s.skipped;
    if (!s.skipped.empty()) t["check"] = "skipped";
    tests.push_back(std::move(t));
  }
  nlohmann::json per_op = nlohmann::json::object();
  int64_t failed = 0, skipped = 0;
  for (const RobustnessRow& row : summarize_robustness(run)) {
    nlohmann::json& op = per_op[row.op];
    op["quantity"] = stressed_quantity(parse_op(row.op));
    op["carved_range"] = {row.carved_range.low, row.carved_range.high};
    op["variants"][row.variant] = {{"tests", row.tests},
                                   {"passed", row.passed},
                                   {"failed", row.failed},
                                   {"skipped", row.skipped},
                                   {"not_offered", row.not_offered},
                                   {"range", {row.range.low, row.range.high}},
                                   {"worst_ratio", row.worst_ratio}};
    failed += row.failed;
    skipped += row.skipped;
  }
  return {{"variants", run.stress_variants},
          {"summary",
           {{"variants", run.stress.size()},
            {"failed", failed},
            {"skipped", skipped},
            {"per_op", per_op}}},
          {"tests", tests}};
}

}  // namespace

nlohmann::json to_json(const ReplayRun& run) {
  nlohmann::json tests = nlohmann::json::array();
  for (const TestResult& r : run.results) tests.push_back(result_json(r));
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
  nlohmann::json j{{"format", "tapml-test-report"},
                   {"version", kTestReportVersion},
                   {"corpus", run.corpus},
                   {"backend", run.backend},
                   {"synthetic", run.synthetic},
                   {"shard", run.shard},
                   {"shards", run.shards},
                   {"summary",
                    {{"tests", run.results.size()},
                     {"failed", failed},
                     {"not_offered", not_offered},
                     {"per_op", per_op}}},
                   {"tests", tests}};
  if (TwinCount n = count_twins(run.results); n.tests > 0)
    j["summary"]["twins"] = {{"tests", n.tests}, {"failed", n.failed}};
  if (!run.stress_variants.empty()) j["robustness"] = robustness_json(run);
  return j;
}

ReplayRun replay_run_from_json(const nlohmann::json& j, const std::string& from) {
  try {
    TAPML_REQUIRE(j.value("format", "") == "tapml-test-report", from + ": not a tapml test report");
    int version = j.at("version");
    // Version 1 is version 2 without the robustness section.
    TAPML_REQUIRE(version >= 1 && version <= kTestReportVersion,
                  from + ": report version " + std::to_string(version) + ", this build reads 1-" +
                      std::to_string(kTestReportVersion));
    ReplayRun run;
    run.corpus = j.at("corpus");
    run.backend = j.at("backend");
    run.synthetic = j.at("synthetic");
    run.shard = j.at("shard");
    run.shards = j.at("shards");
    for (const auto& t : j.at("tests")) run.results.push_back(result_from_json(t));
    if (j.contains("robustness")) {
      const nlohmann::json& rob = j.at("robustness");
      run.stress_variants = rob.at("variants").get<std::vector<std::string>>();
      for (const auto& t : rob.at("tests")) {
        StressResult s;
        s.skipped = t.at("skipped");
        nlohmann::json judged = t;
        if (!s.skipped.empty()) judged["check"] = "pass";
        s.result = result_from_json(judged);
        s.variant = t.at("variant");
        s.range = {t.at("range")[0], t.at("range")[1]};
        s.carved_range = {t.at("carved_range")[0], t.at("carved_range")[1]};
        run.stress.push_back(std::move(s));
      }
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
  all.stress.clear();
  all.shard = 1;
  all.shards = 1;
  std::set<int64_t> seen;
  for (const ReplayRun& s : shards) {
    TAPML_REQUIRE(
        s.corpus == all.corpus && s.backend == all.backend && s.synthetic == all.synthetic,
        "reports to merge come from different runs (" + s.corpus + " on " + s.backend + " vs " +
            all.corpus + " on " + all.backend + ")");
    TAPML_REQUIRE(
        s.stress_variants == all.stress_variants,
        "reports to merge ran different stress variants (" + s.corpus + " on " + s.backend + ")");
    for (const TestResult& r : s.results) {
      TAPML_REQUIRE(seen.insert(r.id).second,
                    "test " + std::to_string(r.id) + " appears in two reports to merge");
      all.results.push_back(r);
    }
    all.stress.insert(all.stress.end(), s.stress.begin(), s.stress.end());
  }
  std::sort(all.results.begin(), all.results.end(),
            [](const TestResult& a, const TestResult& b) { return a.id < b.id; });
  // Each test's variants stay in the order they ran.
  std::stable_sort(
      all.stress.begin(), all.stress.end(),
      [](const StressResult& a, const StressResult& b) { return a.result.id < b.result.id; });
  return all;
}

namespace {

ValueRange cover(const ValueRange& a, const ValueRange& b) {
  return {std::min(a.low, b.low), std::max(a.high, b.high)};
}

// "score [-152, 21.9]"
std::string range_text(Op op, const ValueRange& r) {
  return std::string(stressed_quantity(op)) + " " + r.str();
}

std::string failure_what(const TestResult& r) {
  return r.error.empty() ? std::string(check_name(r.verdict.failed)) + ": " + r.verdict.detail
                         : "error: " + r.error;
}

}  // namespace

std::vector<RobustnessRow> summarize_robustness(const ReplayRun& run) {
  // Keyed by op, then the variant's place in the run's list (unknown names last).
  std::map<std::pair<std::string, size_t>, RobustnessRow> rows;
  std::map<std::string, ValueRange> carved;
  for (const StressResult& s : run.stress) {
    const std::string op(op_name(s.result.op));
    const size_t place =
        size_t(std::find(run.stress_variants.begin(), run.stress_variants.end(), s.variant) -
               run.stress_variants.begin());
    RobustnessRow& row = rows[{op, place}];
    row.op = op;
    row.variant = s.variant;
    row.range = row.tests++ == 0 ? s.range : cover(row.range, s.range);
    if (auto [at, fresh] = carved.try_emplace(op, s.carved_range); !fresh)
      at->second = cover(at->second, s.carved_range);
    if (!s.skipped.empty()) {
      row.skipped++;
      continue;
    }
    row.worst_ratio = std::max(row.worst_ratio, s.result.verdict.worst_ratio);
    if (!s.result.not_offered.empty()) {
      row.not_offered++;
    } else if (s.result.pass) {
      row.passed++;
    } else {
      if (row.failed++ == 0)
        row.first_check = s.result.error.empty() ? check_name(s.result.verdict.failed) : "error";
    }
  }
  std::vector<RobustnessRow> out;
  for (auto& [key, row] : rows) {
    row.carved_range = carved[row.op];
    out.push_back(std::move(row));
  }
  return out;
}

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
  for (const StressResult& s : run.stress) {
    const TestResult& r = s.result;
    const std::string op(op_name(r.op)), suite_name = "robustness." + op;
    JunitSuite& suite = by_op[suite_name];
    suite.name = suite_name;
    JunitCase c;
    c.classname = suite_name;
    c.name = "#" + std::to_string(r.id) + " " + r.site + " " + r.phase + " " + s.variant;
    c.seconds = r.seconds;
    if (!s.skipped.empty() || !r.not_offered.empty()) {
      c.outcome = JunitOutcome::Skipped;
      c.message = !s.skipped.empty() ? "not judged: " + s.skipped : "not offered: " + r.not_offered;
    } else if (s.failed()) {
      const std::string what =
          "at " + s.variant + " (" + range_text(r.op, s.range) + "): " + failure_what(r);
      c.outcome = options.stress_strict ? JunitOutcome::Failure : JunitOutcome::Skipped;
      c.type = r.error.empty() ? check_name(r.verdict.failed) : "error";
      c.message = options.stress_strict
                      ? what
                      : "robustness failure, not part of the verdict (--stress-strict makes it "
                        "one): " +
                            what;
      c.body = what +
               "\nreplay: " + replay_command(r, run.corpus, run.backend, false, 1, s.variant) +
               "\n";
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
                           const std::string& backend, bool synthetic, uint64_t seed,
                           const std::string& stress_variant) {
  return "tapml test --corpus " + shell_quote(corpus) + " --backend " + shell_quote(backend) +
         " --id " + std::to_string(r.id) +
         (synthetic ? " --synthetic --seed " + std::to_string(seed) : "") +
         (stress_variant.empty() ? "" : " --stress " + shell_quote(stress_variant));
}

std::string failure_text(const TestResult& r, const std::string& corpus, const std::string& backend,
                         bool synthetic, uint64_t seed) {
  return "FAIL #" + std::to_string(r.id) + " " + r.site + " (" + std::string(op_name(r.op)) + ", " +
         r.phase + (r.twin ? ", synthetic twin" : "") + "): " + failure_what(r) +
         "\n  replay: " + replay_command(r, corpus, backend, synthetic, seed) + "\n";
}

std::string robustness_text(const ReplayRun& run, int max_failures) {
  if (run.stress_variants.empty()) return "";
  const std::vector<RobustnessRow> rows = summarize_robustness(run);
  const std::map<std::string, OpSummary> carved = summarize(run.results);
  char line[256];
  std::string out =
      "\nrobustness: stress variants of the carved tests, reported apart from the verdict "
      "above\n";
  std::snprintf(line, sizeof line, "%-12s %-16s %7s %7s %7s %7s %10s  %s\n", "op", "variant",
                "tests", "passed", "failed", "skipped", "worst/tol", "range");
  out += line;
  auto row_line = [&](const std::string& op, const std::string& variant, int64_t tests,
                      int64_t passed, int64_t failed, int64_t skipped, const ValueRange& range,
                      double ratio) {
    std::snprintf(line, sizeof line, "%-12s %-16s %7lld %7lld %7lld %7lld %10.3g  %s\n", op.c_str(),
                  variant.c_str(), (long long)tests, (long long)passed, (long long)failed,
                  (long long)skipped, ratio, range_text(parse_op(op), range).c_str());
    out += line;
  };
  // One sentence per op: where it holds and where it breaks.
  std::string verdicts;
  std::vector<std::string> failing_ops;
  int64_t variants = 0, failed = 0, skipped = 0;
  for (size_t i = 0; i < rows.size();) {
    const std::string op = rows[i].op;
    const OpSummary own = carved.count(op) ? carved.at(op) : OpSummary{};
    const ValueRange own_range = rows[i].carved_range;
    row_line(op, "carved", own.tests, own.passed, own.failed, 0, own_range, own.worst_ratio);
    std::string holds, fails;
    for (; i < rows.size() && rows[i].op == op; ++i) {
      const RobustnessRow& r = rows[i];
      row_line(op, r.variant, r.tests, r.passed, r.failed, r.skipped, r.range, r.worst_ratio);
      variants += r.tests;
      failed += r.failed;
      skipped += r.skipped;
      const std::string at = r.variant + " " + r.range.str();
      if (r.failed > 0)
        fails += (fails.empty() ? "" : ", ") + at + ": " + std::to_string(r.failed) + " of " +
                 std::to_string(r.tests) + " " + r.first_check;
      else if (r.passed > 0)
        holds += ", " + at;
    }
    verdicts += "  " + op + " (" + stressed_quantity(parse_op(op)) + "): " +
                (own.failed > 0 ? "fails its own range " + own_range.str() + " (the verdict above)"
                                : "holds its own range " + own_range.str()) +
                holds;
    if (!fails.empty()) {
      verdicts += "; fails " + fails;
      failing_ops.push_back(op);
    }
    verdicts += "\n";
  }
  out += verdicts;
  std::string names;
  for (const std::string& op : failing_ops) names += (names.empty() ? "" : ", ") + op;
  out += "robustness: " + std::to_string(variants) +
         (variants == 1 ? " variant, " : " variants, ") + std::to_string(failed) + " failed" +
         (names.empty() ? "" : " (" + names + ")") + ", " + std::to_string(skipped) +
         " skipped (where the source or f32 itself cannot hold them)";
  out += failed > 0 ? "; not part of the verdict unless --stress-strict\n" : "\n";

  // The first failing variant of each op and variant, with the command that replays it.
  int listed = 0, more = 0;
  std::set<std::pair<std::string, std::string>> shown;
  for (const StressResult& s : run.stress) {
    if (!s.failed() || !shown.insert({std::string(op_name(s.result.op)), s.variant}).second)
      continue;
    if (max_failures > 0 && listed >= max_failures) {
      ++more;
      continue;
    }
    const TestResult& r = s.result;
    out += "ROBUSTNESS FAIL #" + std::to_string(r.id) + " " + r.site + " (" +
           std::string(op_name(r.op)) + ", " + r.phase + ") at " + s.variant + " (" +
           range_text(r.op, s.range) + "): " + failure_what(r) +
           "\n  replay: " + replay_command(r, run.corpus, run.backend, false, 1, s.variant) + "\n";
    ++listed;
  }
  if (more > 0)
    out += "... and " + std::to_string(more) +
           " more ops and variants with failures (--max-failures 0 lists all)\n";
  return out;
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

#include "report/conformance_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

#include "report/command_line.h"

namespace tapml {

namespace {

nlohmann::json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

// printf into a string; the pieces formatted here are short (one table row at most).
std::string format(const char* fmt, auto... args) {
  std::vector<char> buf(256);
  int n = std::snprintf(buf.data(), buf.size(), fmt, args...);
  if (n >= int(buf.size())) {
    buf.resize(size_t(n) + 1);
    std::snprintf(buf.data(), buf.size(), fmt, args...);
  }
  return n < 0 ? std::string() : std::string(buf.data(), size_t(n));
}

std::string ratio_text(const ConformanceGroup& g) {
  if (g.passed + g.failed == 0) return "-";
  return std::isfinite(g.worst_ratio) ? format("%.3g", g.worst_ratio) : "inf";
}

// The failing ops, in the order of the results: "matmul, rope".
std::string failing_ops(const ConformanceRun& run) {
  std::string s;
  std::vector<Op> seen;
  for (const ConformanceResult& r : run.results) {
    if (r.status != CaseStatus::Fail) continue;
    if (std::find(seen.begin(), seen.end(), r.op) != seen.end()) continue;
    seen.push_back(r.op);
    s += (s.empty() ? "" : ", ") + std::string(op_name(r.op));
  }
  return s;
}

// The command that reruns every case of one op, with the same inputs.
std::string rerun_command(const ConformanceRun& run, Op op) {
  return "tapml test --conformance --backend " + shell_quote(run.backend) + " --op '^" +
         std::string(op_name(op)) + "$' --seed " + std::to_string(run.seed);
}

}  // namespace

std::string conformance_summary_line(const ConformanceRun& run) {
  ConformanceTotals t = totals(run);
  std::string s = format("%lld cases: %lld passed, %lld failed", (long long)t.cases,
                         (long long)t.passed, (long long)t.failed);
  if (t.failed) s += " (" + failing_ops(run) + ")";
  s += format(", %lld not offered", (long long)t.not_offered);
  if (t.not_offered) s += " (refused by the backend: not failures)";
  return s;
}

std::string conformance_table(const ConformanceRun& run) {
  std::vector<ConformanceGroup> groups = summarize(run);
  size_t width = 6, op_width = 10;
  for (const ConformanceGroup& g : groups) {
    width = std::max(width, g.dtypes.size());
    op_width = std::max(op_width, op_name(g.op).size());
  }
  const int w = int(width), ow = int(op_width);
  std::string out = "conformance of " + run.backend + " (" + run.device + ") against ref, seed " +
                    std::to_string(run.seed) + "\n";
  out += format("%-*s %-*s %6s %7s %7s %12s %10s\n", ow, "op", w, "dtypes", "cases", "passed",
                "failed", "not offered", "worst/tol");
  for (const ConformanceGroup& g : groups)
    out +=
        format("%-*s %-*s %6lld %7lld %7lld %12lld %10s\n", ow, std::string(op_name(g.op)).c_str(),
               w, g.dtypes.c_str(), (long long)g.cases, (long long)g.passed, (long long)g.failed,
               (long long)g.not_offered, ratio_text(g).c_str());
  for (const ConformanceResult& r : run.results)
    if (r.status == CaseStatus::Fail)
      out += "FAIL " + std::string(op_name(r.op)) + " [" + r.dtypes + "] " + r.label + ": " +
             r.check + ": " + r.detail + "\n";
  for (const ConformanceGroup& g : groups)
    if (g.not_offered)
      out += "not offered: " + std::string(op_name(g.op)) + " [" + g.dtypes +
             "]: " + g.not_offered_reason + "\n";
  std::vector<Op> rerun;
  for (const ConformanceResult& r : run.results)
    if (r.status == CaseStatus::Fail && std::find(rerun.begin(), rerun.end(), r.op) == rerun.end())
      rerun.push_back(r.op);
  for (Op op : rerun) out += "  rerun: " + rerun_command(run, op) + "\n";
  return out + conformance_summary_line(run) + "\n";
}

nlohmann::json conformance_json(const ConformanceRun& run) {
  nlohmann::json cases = nlohmann::json::array();
  for (const ConformanceResult& r : run.results) {
    nlohmann::json outs = nlohmann::json::array();
    for (const OutputVerdict& o : r.verdict.outputs)
      outs.push_back({{"check", check_name(o.failed)},
                      {"error", number_or_null(o.metrics.error)},
                      {"tolerance", o.tolerance},
                      {"ratio", number_or_null(o.ratio)},
                      {"noise", o.noise},
                      {"noise_multiple", number_or_null(o.noise_multiple)},
                      {"max_abs", number_or_null(o.metrics.max_abs)},
                      {"nmse", number_or_null(o.metrics.nmse)},
                      {"cosine", number_or_null(o.metrics.cosine)},
                      {"nan", o.metrics.nan},
                      {"pos_inf", o.metrics.pos_inf},
                      {"neg_inf", o.metrics.neg_inf}});
    cases.push_back({{"op", std::string(op_name(r.op))},
                     {"dtypes", r.dtypes},
                     {"label", r.label},
                     {"status", case_status_name(r.status)},
                     {"check", r.check},
                     {"ratio", number_or_null(r.ratio)},
                     {"detail", r.detail},
                     {"seconds", r.seconds},
                     {"outputs", outs}});
  }
  nlohmann::json groups = nlohmann::json::array();
  for (const ConformanceGroup& g : summarize(run))
    groups.push_back({{"op", std::string(op_name(g.op))},
                      {"dtypes", g.dtypes},
                      {"cases", g.cases},
                      {"passed", g.passed},
                      {"failed", g.failed},
                      {"not_offered", g.not_offered},
                      {"worst_ratio", number_or_null(g.worst_ratio)},
                      {"not_offered_reason", g.not_offered_reason}});
  ConformanceTotals t = totals(run);
  nlohmann::json failed_ops = nlohmann::json::array();
  for (const ConformanceGroup& g : summarize(run))
    if (g.failed && (failed_ops.empty() || failed_ops.back() != op_name(g.op)))
      failed_ops.push_back(std::string(op_name(g.op)));
  return {{"format", "tapml-conformance-report"},
          {"version", kConformanceReportVersion},
          {"backend", run.backend},
          {"device", run.device},
          {"source", "ref"},
          {"seed", run.seed},
          {"op_filter", run.op_regex},
          {"summary",
           {{"cases", t.cases},
            {"passed", t.passed},
            {"failed", t.failed},
            {"not_offered", t.not_offered},
            {"failed_ops", failed_ops}}},
          {"groups", groups},
          {"cases", cases}};
}

std::string conformance_junit_xml(const ConformanceRun& run, const JunitStamp& stamp) {
  std::map<Op, JunitSuite> by_op;
  for (const ConformanceResult& r : run.results) {
    const std::string name(op_name(r.op));
    JunitSuite& suite = by_op[r.op];
    suite.name = name;
    JunitCase c;
    c.classname = name;
    c.name = "[" + r.dtypes + "] " + r.label;
    c.seconds = r.seconds;
    if (r.status == CaseStatus::NotOffered) {
      c.outcome = JunitOutcome::Skipped;
      c.message = "not offered: " + r.detail;
    } else if (r.status == CaseStatus::Fail) {
      c.outcome = JunitOutcome::Failure;
      c.type = r.check;
      c.message = r.detail;
      c.body = r.check + ": " + r.detail + "\ncase: " + name + " [" + r.dtypes + "] " + r.label +
               "\nrerun: " + rerun_command(run, r.op) + "\n";
    }
    suite.cases.push_back(std::move(c));
  }
  std::vector<JunitSuite> suites;
  for (auto& [op, suite] : by_op) suites.push_back(std::move(suite));
  return junit_document("tapml conformance " + run.backend, suites, stamp);
}

}  // namespace tapml

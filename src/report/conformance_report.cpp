#include "report/conformance_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <vector>

#include "report/xml.h"

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

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
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
  size_t width = 6;
  for (const ConformanceGroup& g : groups) width = std::max(width, g.dtypes.size());
  const int w = int(width);
  std::string out = "conformance of " + run.backend + " (" + run.device + ") against ref, seed " +
                    std::to_string(run.seed) + "\n";
  out += format("%-10s %-*s %6s %7s %7s %12s %10s\n", "op", w, "dtypes", "cases", "passed",
                "failed", "not offered", "worst/tol");
  for (const ConformanceGroup& g : groups)
    out += format("%-10s %-*s %6lld %7lld %7lld %12lld %10s\n", std::string(op_name(g.op)).c_str(),
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
  for (Op op : rerun)
    out += "  rerun: tapml test --conformance --backend " + shell_quote(run.backend) + " --op '^" +
           std::string(op_name(op)) + "$' --seed " + std::to_string(run.seed) + "\n";
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

std::string conformance_junit_xml(const ConformanceRun& run) {
  std::map<Op, std::vector<const ConformanceResult*>> by_op;
  for (const ConformanceResult& r : run.results) by_op[r.op].push_back(&r);
  std::string x =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"tapml conformance " +
      xml_escape(run.backend) + "\">\n";
  for (auto& [op, rs] : by_op) {
    const std::string name(op_name(op));
    int64_t failures = 0, skipped = 0;
    double seconds = 0;
    for (const ConformanceResult* r : rs) {
      failures += r->status == CaseStatus::Fail;
      skipped += r->status == CaseStatus::NotOffered;
      seconds += r->seconds;
    }
    x += "  <testsuite name=\"" + xml_escape(name) + "\" tests=\"" + std::to_string(rs.size()) +
         "\" failures=\"" + std::to_string(failures) + "\" skipped=\"" + std::to_string(skipped) +
         "\" time=\"" + format("%.6f", seconds) + "\">\n";
    for (const ConformanceResult* r : rs) {
      x += "    <testcase classname=\"" + xml_escape(name) + "\" name=\"" +
           xml_escape("[" + r->dtypes + "] " + r->label) + "\" time=\"" +
           format("%.6f", r->seconds) + "\"";
      if (r->status == CaseStatus::Pass) {
        x += "/>\n";
        continue;
      }
      if (r->status == CaseStatus::NotOffered)
        x += ">\n      <skipped message=\"" + xml_escape("not offered: " + r->detail) + "\"/>\n";
      else
        x += ">\n      <failure type=\"" + xml_escape(r->check) + "\" message=\"" +
             xml_escape(r->detail) + "\"/>\n";
      x += "    </testcase>\n";
    }
    x += "  </testsuite>\n";
  }
  return x + "</testsuites>\n";
}

}  // namespace tapml

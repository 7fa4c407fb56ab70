#include "report/compare_report.h"

#include <cmath>
#include <cstdarg>
#include <cstdio>

namespace tapml {

namespace {

// "error" when the target threw instead of producing outputs.
std::string check_label(const SiteLocal& s) {
  return s.worst_threw ? "error" : check_name(s.worst_check);
}

nlohmann::json ratio_json(double r) { return std::isfinite(r) ? nlohmann::json(r) : nullptr; }

void append(std::string& out, const char* format, ...) {
  char buf[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  out += buf;
}

}  // namespace

nlohmann::json to_json(const CompareReport& r) {
  nlohmann::json sites = nlohmann::json::array();
  int64_t calls = 0, failed_calls = 0;
  for (const SiteLocal& s : r.sites) {
    sites.push_back({{"site", s.site.str()},
                     {"op", std::string(op_name(s.op))},
                     {"layer", s.site.layer},
                     {"calls", s.calls},
                     {"failed", s.failed},
                     {"unsupported", s.unsupported},
                     {"worst_ratio", ratio_json(s.worst_ratio)},
                     {"worst_error", ratio_json(s.worst_error)},
                     {"worst_check", check_label(s)},
                     {"worst_detail", s.worst_detail},
                     {"worst_phase", s.worst_phase.str()},
                     {"unsupported_reason", s.unsupported_reason}});
    calls += s.calls;
    failed_calls += s.failed;
  }
  return {{"format", "tapml-compare-report"},
          {"version", kCompareReportVersion},
          {"model", r.model},
          {"source", r.source},
          {"target", r.target},
          {"prompts", r.prompt_texts},
          {"steps", r.steps},
          {"kv_cache", r.kv_cache},
          {"sites", sites},
          {"summary",
           {{"sites", r.sites.size()},
            {"sites_compared", r.sites_compared()},
            {"sites_failed", r.sites_failed()},
            {"sites_not_comparable", r.sites_not_comparable()},
            {"calls", calls},
            {"calls_compared", r.calls_compared},
            {"calls_failed", failed_calls},
            {"pass", r.pass()}}}};
}

std::string compare_text(const CompareReport& r) {
  std::string out;
  append(out, "isolated comparison of %s against %s (each call fed the source's inputs)\n",
         r.target.c_str(), r.source.c_str());
  append(out, "     %-24s %-10s %7s %7s %10s  %s\n", "site", "op", "calls", "failed", "worst/tol",
         "check");
  for (const SiteLocal& s : r.sites) {
    if (s.compared() == 0) continue;  // listed under coverage only
    append(out, "%-4s %-24s %-10s %7lld %7lld %10.3g  %s\n", s.failed ? "FAIL" : "ok",
           s.site.str().c_str(), std::string(op_name(s.op)).c_str(), (long long)s.compared(),
           (long long)s.failed, s.worst_ratio, check_label(s).c_str());
    if (s.failed)
      append(out, "       worst at %s: %s\n", s.worst_phase.str().c_str(), s.worst_detail.c_str());
  }
  const int64_t not_comparable = r.sites_not_comparable();
  if (not_comparable) {
    append(out, "coverage: %lld sites could not be compared (the target cannot run them):\n",
           (long long)not_comparable);
    for (const SiteLocal& s : r.sites)
      if (s.unsupported)
        append(out, "  n/a  %-24s %-10s %lld of %lld calls: %s\n", s.site.str().c_str(),
               std::string(op_name(s.op)).c_str(), (long long)s.unsupported, (long long)s.calls,
               s.unsupported_reason.c_str());
  } else {
    out += "coverage: every call was compared\n";
  }
  append(out, "%lld sites compared, %lld failed, %lld not comparable\n",
         (long long)r.sites_compared(), (long long)r.sites_failed(), (long long)not_comparable);
  if (r.sites_failed() == 0 && not_comparable > 0)
    append(out, "note: no compared site failed, but %lld sites were not compared on %s\n",
           (long long)not_comparable, r.target.c_str());
  return out;
}

}  // namespace tapml

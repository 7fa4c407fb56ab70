#include "report/migrate_report.h"

#include <cmath>
#include <cstdio>

#include "core/version.h"
#include "report/command_line.h"
#include "report/stamp.h"

namespace tapml {

namespace {

nlohmann::json number(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(); }

nlohmann::json named_json(const std::vector<Culprit>& named) {
  nlohmann::json out = nlohmann::json::array();
  for (const Culprit& c : named)
    out.push_back({{"site", c.site},
                   {"op", std::string(op_name(c.op))},
                   {"evidence", c.evidence},
                   {"group", c.group}});
  return out;
}

nlohmann::json groups_json(const std::vector<CauseGroup>& groups) {
  nlohmann::json out = nlohmann::json::array();
  for (const CauseGroup& g : groups) {
    nlohmann::json ops = nlohmann::json::array();
    for (Op op : g.ops) ops.push_back(std::string(op_name(op)));
    nlohmann::json j{{"label", g.label}, {"cause", g.cause}, {"ops", ops}, {"sites", g.sites}};
    if (g.cause == "weight_dtype") j["dtype"] = std::string(dtype_name(g.dtype));
    out.push_back(j);
  }
  return out;
}

nlohmann::json context_json(const ReportContext& c) {
  nlohmann::json j = nlohmann::json::object();
  if (!c.command.empty()) j["command"] = c.command;
  if (!c.date.empty()) j["date"] = c.date;
  if (!c.version.empty()) j["tapml_version"] = c.version;
  if (!c.corpus.empty())
    j["corpus"] = {
        {"path", c.corpus}, {"backend", c.corpus_backend}, {"failing_tests", c.failing_tests}};
  return j;
}

}  // namespace

ReportContext report_context(const std::vector<std::string>& argv) {
  ReportContext c;
  c.command = command_line(argv);
  c.date = utc_iso8601();
  c.version = kTapmlVersion;
  return c;
}

ReportContext report_context(int argc, const char* const* argv) {
  return report_context(std::vector<std::string>(argv, argv + argc));
}

nlohmann::json to_json(const MigrateReport& r, const std::optional<ReportContext>& context) {
  nlohmann::json timeline = nlohmann::json::array();
  for (const MigrationStep& s : r.timeline)
    timeline.push_back({{"step", s.step},
                        {"label", s.label},
                        {"n_target_sites", s.target_sites.size()},
                        {"target_sites", s.target_sites},
                        {"pass", s.pass},
                        {"nmse", number(s.e2e.nmse)},
                        {"kl", number(s.e2e.kl)},
                        {"top1", s.e2e.top1()},
                        {"tokens_matching", s.e2e.top1_matching},
                        {"tokens_total", s.e2e.positions},
                        {"first_mismatch", s.e2e.first_mismatch},
                        {"finite", s.e2e.finite},
                        {"kept_on_source", s.kept_on_source},
                        {"seconds", s.seconds}});
  nlohmann::json sites = nlohmann::json::array(), unsupported = nlohmann::json::array();
  for (const SiteAttribution& a : r.sites) {
    if (!a.info.target_supports)
      unsupported.push_back({{"site", a.info.site.str()},
                             {"op", std::string(op_name(a.info.op))},
                             {"reason", a.info.unsupported_reason}});
    nlohmann::json site{{"site", a.info.site.str()},
                        {"op", std::string(op_name(a.info.op))},
                        {"layer", a.info.site.layer},
                        {"supported", a.info.target_supports}};
    if (a.compared)
      site["local"] = {{"ratio", number(a.local_ratio)},
                       {"error", number(a.local_error)},
                       {"check", a.local_check},
                       {"calls", a.calls},
                       {"failed", a.failed}};
    if (a.propagated_measured) {
      site["propagated"] = {{"error", number(a.propagated_error)}};
      // How much larger the error is with everything upstream on the target than alone.
      if (a.compared && a.local_error > 0)
        site["amplification"] = number(a.propagated_error / a.local_error);
    }
    sites.push_back(site);
  }
  nlohmann::json culprit_ops = nlohmann::json::array(), searches = nlohmann::json::array();
  for (Op op : r.culprit_ops) culprit_ops.push_back(std::string(op_name(op)));
  for (const Bisection& b : r.bisections)
    searches.push_back({{"label", b.label},
                        {"candidates", b.candidates},
                        {"runs", b.runs},
                        {"culprits", b.culprits}});
  nlohmann::json j = {{"format", "tapml-migrate-report"},
                      {"version", kMigrateReportVersion},
                      {"model", r.model},
                      {"source", r.source},
                      {"target", r.target},
                      {"strategy", r.strategy},
                      {"prompts", r.prompt_texts},
                      {"steps", r.steps},
                      {"kv_cache", r.kv_cache},
                      {"thresholds", {{"nmse", r.nmse_threshold}, {"noise_nmse", r.noise_nmse}}},
                      {"timeline", timeline},
                      {"bisect",
                       {{"runs", r.bisect_runs},
                        {"candidates", r.bisect_candidates},
                        {"culprits", r.bisect_culprits},
                        {"searches", searches}}},
                      {"sites", sites},
                      {"unsupported", unsupported},
                      {"verdict",
                       {{"status", r.status},
                        {"culprits", named_json(r.culprits)},
                        {"culprit_ops", culprit_ops},
                        {"groups", groups_json(r.groups)},
                        {"latent", named_json(r.latent)},
                        {"latent_groups", groups_json(r.latent_groups)},
                        {"untested", r.untested},
                        {"summary", r.summary}}},
                      {"runs", r.runs},
                      {"seconds", r.seconds}};
  if (context) j["context"] = context_json(*context);
  return j;
}

std::string migrate_text(const MigrateReport& r) {
  std::string out = r.model + ": " + r.source + " -> " + r.target + ", strategy " + r.strategy +
                    ", " + std::to_string(r.runs) + " end-to-end runs";
  if (r.bisect_candidates)
    out += " (bisection: " + std::to_string(r.bisect_runs) + " runs over " +
           std::to_string(r.bisect_candidates) + " sites)";
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, ", %.1f s\n", r.seconds);
  out += seconds;
  out += (r.status == "pass" ? "PASS: " : "FAIL: ") + r.summary + "\n";
  // Each group's heading, then its sites: "culprit SITE (op): evidence".
  auto by_group = [&](const char* what, const std::vector<CauseGroup>& groups,
                      const std::vector<Culprit>& named, const char* heading, const char* tail) {
    for (size_t g = 0; g < groups.size(); ++g) {
      const size_t n = groups[g].sites.size();
      out += "  " + std::string(heading) + " " + groups[g].label + ", " + std::to_string(n) +
             (n == 1 ? " site" : " sites") + tail + ":\n";
      for (const Culprit& c : named)
        if (c.group == int(g))
          out += "    " + std::string(what) + " " + c.site + " (" + std::string(op_name(c.op)) +
                 "): " + c.evidence + "\n";
    }
  };
  by_group("culprit", r.groups, r.culprits, "cause", "");
  by_group("latent", r.latent_groups, r.latent, "latent", " (fail in isolation, not culprits)");
  if (!r.untested.empty()) {
    out += "  not run end to end:";
    for (const std::string& u : r.untested) out += " " + u + ";";
    out.back() = '\n';
  }
  for (const SiteAttribution& s : r.sites)
    if (!s.info.target_supports)
      out += "  not comparable: " + s.info.site.str() + " (" + std::string(op_name(s.info.op)) +
             "): " + s.info.unsupported_reason + "\n";
  return out;
}

}  // namespace tapml

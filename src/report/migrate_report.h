// The canonical JSON of a migration (format "tapml-migrate-report", versioned): the
// timeline, the bisections, per-site attribution, coverage, and the verdict with its culprits
// grouped by cause, the latent sites (failing in isolation, output unchanged) and the groups
// not run. Infinite ratios and errors (NaN/Inf/guard failures) are written as null.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "migrate/migrate.h"

namespace tapml {

// Version 2: the timeline goes on past a failing step (auto), each step saying which failed
// groups it kept on the source ("kept_on_source"); "bisect" holds one search per failing
// group ("searches", totals as before); the verdict adds "groups" (culprits by cause, each
// culprit's "group" its index), "latent", "latent_groups" and "untested". Version 1 (no
// continuation, one bisection, none of those fields) is still read by migrate_html.
constexpr int kMigrateReportVersion = 2;

// What a migration cannot know about itself: how its report was made, and carved tests that
// reproduce its failure one op call at a time. Written as the report's "context" object
// ({"command", "date", "tapml_version", "corpus": {"path", "backend", "failing_tests"}});
// the HTML report's "next steps" show it. Empty strings are left out.
struct ReportContext {
  std::string command;  // the command line that produced the report, as a shell reads it
  std::string date;     // when: ISO 8601 in UTC, "2025-12-01T14:20:11Z"
  std::string version;  // tapml's version (kTapmlVersion)
  // Optional: a corpus carved from the same model, and the ids of its tests that fail on
  // `corpus_backend`; each is replayed by `tapml test --corpus C --backend B --id N`.
  std::string corpus, corpus_backend;
  std::vector<int64_t> failing_tests;
};
// A context for a report made now by this build, from the process's command line (main's
// argv, program name first): each word quoted for a POSIX shell where it needs it.
ReportContext report_context(const std::vector<std::string>& argv);
ReportContext report_context(int argc, const char* const* argv);

nlohmann::json to_json(const MigrateReport& r,
                       const std::optional<ReportContext>& context = std::nullopt);
// What `tapml migrate` prints: the runs made, the verdict, the culprits by cause with their
// evidence, the latent sites, the groups not run and the sites the target could not run.
std::string migrate_text(const MigrateReport& r);

}  // namespace tapml

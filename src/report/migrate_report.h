// The canonical JSON of a migration (format "tapml-migrate-report", versioned): the
// timeline, the bisection, per-site attribution, coverage, and the verdict with its culprits.
// Infinite ratios and errors (NaN/Inf/guard failures) are written as null.
#pragma once
#include <nlohmann/json.hpp>

#include "migrate/migrate.h"

namespace tapml {

constexpr int kMigrateReportVersion = 1;
nlohmann::json to_json(const MigrateReport& r);
// What `tapml migrate` prints: the runs made, the verdict, each culprit with its evidence,
// and the sites the target could not run.
std::string migrate_text(const MigrateReport& r);

}  // namespace tapml

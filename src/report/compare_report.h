// Reports of an isolated comparison (migrate/compare.h): canonical JSON
// (tapml-compare-report, version 1) and the text table `tapml compare` prints.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "migrate/compare.h"

namespace tapml {

constexpr int kCompareReportVersion = 1;
nlohmann::json to_json(const CompareReport& r);
// One line per compared site (calls, failures, worst error / tolerance, check), the worst
// call of each failing site, the sites the target could not run, and a summary line.
std::string compare_text(const CompareReport& r);

}  // namespace tapml

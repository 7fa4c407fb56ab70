// Reports of a conformance run: the table a backend author reads, the canonical JSON
// (versioned; JSON has no infinity, so a ratio of +inf is written as null) and JUnit XML
// (one testsuite per op; a case the backend does not offer is a skipped testcase).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "replay/conformance.h"
#include "report/junit.h"

namespace tapml {

// One line per (op, dtypes): cases, passed, failed, not offered, worst error / tolerance;
// then one line per failing case with its detail, the reason of each combination not
// offered, a command that reruns each failing op, and the totals (naming the failing ops).
std::string conformance_table(const ConformanceRun& run);
// The last line of the table: "53 cases: 50 passed, 3 failed (matmul), 0 not offered".
std::string conformance_summary_line(const ConformanceRun& run);

constexpr int kConformanceReportVersion = 1;
nlohmann::json conformance_json(const ConformanceRun& run);

// A failure's body holds its detail, the case, and the command that reruns its op.
std::string conformance_junit_xml(const ConformanceRun& run,
                                  const JunitStamp& stamp = JunitStamp::now());

}  // namespace tapml

// When and where a report was made, in the forms the reports write.
#pragma once
#include <chrono>
#include <string>

namespace tapml {

// The time in UTC, ISO 8601 with the zone: "2025-12-01T14:20:11Z".
std::string utc_iso8601(std::chrono::system_clock::time_point t = std::chrono::system_clock::now());
// This machine's host name ("localhost" when it has none).
std::string host_name();

}  // namespace tapml

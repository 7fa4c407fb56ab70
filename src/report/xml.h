// XML text for the reports that write XML (JUnit).
#pragma once
#include <string>

namespace tapml {

// `s` escaped for an attribute or text node; control characters XML 1.0 does not allow
// become spaces.
std::string xml_escape(const std::string& s);

}  // namespace tapml

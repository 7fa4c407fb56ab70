// XML text for the reports that write XML (JUnit).
#pragma once
#include <string>

namespace tapml {

// `s` escaped for an attribute or text node, and always well-formed: control characters
// XML 1.0 does not allow become spaces, and bytes that are not UTF-8 (a remote device's
// message, a corrupt detail) become U+FFFD.
std::string xml_escape(const std::string& s);
// The same for a text node, where quotes stay as they are: a command line in a failure's
// body reads as typed.
std::string xml_text(const std::string& s);

}  // namespace tapml

// Content-Security-Policy for the pages TapML writes: an inline script is allowed by the
// hash of its text, so it runs while any other script (one that slipped into the page
// through a report's strings) is refused.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tapml {

std::array<uint8_t, 32> sha256(std::string_view data);
std::string base64(const uint8_t* data, size_t n);
// "'sha256-BASE64'": the CSP source that allows exactly the script whose text is `script`.
std::string csp_script_hash(std::string_view script);

}  // namespace tapml

#include "report/xml.h"

#include <cstdint>

namespace tapml {

namespace {

// The length of the valid UTF-8 sequence starting at s[i] that encodes a character XML 1.0
// allows, or 0.
size_t valid_utf8(const std::string& s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  uint32_t cp = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < n; k++) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (byte(i + k) & 0x3F);
  }
  bool overlong = (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
  bool excluded = (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF || cp > 0x10FFFF;
  return overlong || excluded ? 0 : n;
}

std::string escape(const std::string& s, bool attribute) {
  std::string o;
  o.reserve(s.size());
  for (size_t i = 0; i < s.size(); i++) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '&':
        o += "&amp;";
        break;
      case '<':
        o += "&lt;";
        break;
      case '>':
        o += "&gt;";
        break;
      case '"':
        o += attribute ? "&quot;" : "\"";
        break;
      case '\'':
        o += attribute ? "&apos;" : "'";
        break;
      default:
        if (c < 0x80) {
          o += c < 0x20 && c != '\n' && c != '\t' ? ' ' : char(c);
        } else if (size_t n = valid_utf8(s, i)) {
          o.append(s, i, n);
          i += n - 1;
        } else {
          o += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
        }
    }
  }
  return o;
}

}  // namespace

std::string xml_escape(const std::string& s) { return escape(s, true); }
std::string xml_text(const std::string& s) { return escape(s, false); }

}  // namespace tapml

#include "report/xml.h"

namespace tapml {

std::string xml_escape(const std::string& s) {
  std::string o;
  for (unsigned char c : s) {
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
        o += "&quot;";
        break;
      case '\'':
        o += "&apos;";
        break;
      default:
        o += c < 0x20 && c != '\n' && c != '\t' ? ' ' : char(c);
    }
  }
  return o;
}

}  // namespace tapml

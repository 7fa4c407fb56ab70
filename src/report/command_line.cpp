#include "report/command_line.h"

#include <cctype>
#include <string_view>

namespace tapml {

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string shell_word(const std::string& s) {
  if (s.empty()) return "''";
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) &&
        std::string_view("-_./:=,+@%").find(c) == std::string_view::npos)
      return shell_quote(s);
  return s;
}

std::string command_line(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "" : " ") + shell_word(w);
  return out;
}

}  // namespace tapml

#include "model/site.h"

#include <charconv>
#include <ostream>

#include "core/error.h"

namespace tapml {

namespace {
constexpr std::string_view kBlock = "blk.";
constexpr std::string_view kDecode = "decode_";

// A non-negative decimal without sign or leading zeros, or -1.
int parse_count(std::string_view digits) {
  if (digits.empty() || (digits.size() > 1 && digits[0] == '0')) return -1;
  int n = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  return ec == std::errc() && end == digits.data() + digits.size() && n >= 0 ? n : -1;
}
}  // namespace

std::string Site::str() const {
  std::string out;
  append_to(out);
  return out;
}

void Site::append_to(std::string& out) const {
  if (layer >= 0) {
    char digits[16];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, layer);
    out += kBlock;
    out.append(digits, end);
    out += '.';
  }
  out += role;
}

Site Site::parse(std::string_view text) {
  TAPML_REQUIRE(!text.empty(), "empty site name");
  if (text.starts_with(kBlock)) {
    std::string_view rest = text.substr(kBlock.size());
    size_t dot = rest.find('.');
    if (dot != std::string_view::npos) {
      int layer = parse_count(rest.substr(0, dot));
      if (layer >= 0) {
        TAPML_REQUIRE(dot + 1 < rest.size(), "site '" + std::string(text) + "' has no role");
        return {layer, std::string(rest.substr(dot + 1))};
      }
    }
  }
  return {-1, std::string(text)};
}

Phase Phase::decode(int step) {
  TAPML_REQUIRE(step >= 1, "decode step " + std::to_string(step) + " must be at least 1");
  return {step};
}

std::string Phase::str() const {
  return is_prefill() ? "prefill" : std::string(kDecode) + std::to_string(decode_step);
}

Phase Phase::parse(std::string_view text) {
  if (text == "prefill") return prefill();
  if (text.starts_with(kDecode)) {
    int step = parse_count(text.substr(kDecode.size()));
    if (step >= 1) return {step};
  }
  throw Error("phase '" + std::string(text) + "' is neither 'prefill' nor 'decode_K'");
}

std::ostream& operator<<(std::ostream& os, const Site& s) { return os << s.str(); }
std::ostream& operator<<(std::ostream& os, const Phase& p) { return os << p.str(); }

}  // namespace tapml

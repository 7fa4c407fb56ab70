#include "runtime/placement.h"

#include <algorithm>

#include "core/error.h"

namespace tapml {

void Placement::add_rule(const std::string& rule) {
  // The pattern may hold '=' only escaped or inside brackets; the URI may hold '=' in its
  // query. So split at the first '=' that is neither escaped nor inside [...] or (...).
  int depth = 0;
  for (size_t i = 0; i < rule.size(); ++i) {
    char c = rule[i];
    if (c == '\\') {
      ++i;
      continue;
    }
    if (c == '[' || c == '(') ++depth;
    if ((c == ']' || c == ')') && depth > 0) --depth;
    if (c == '=' && depth == 0) return add_rule(rule.substr(0, i), rule.substr(i + 1));
  }
  throw Error("placement rule '" + rule + "' is not REGEX=BACKEND (e.g. 'matmul=cpu')");
}

void Placement::add_rule(const std::string& pattern, const std::string& uri) {
  TAPML_REQUIRE(!pattern.empty(), "placement rule with an empty pattern");
  TAPML_REQUIRE(!uri.empty(), "placement rule '" + pattern + "=' names no backend");
  try {
    rules_.push_back(
        {pattern, std::regex(pattern, std::regex::ECMAScript | std::regex::optimize), uri});
  } catch (const std::regex_error& e) {
    throw Error("placement rule '" + pattern + "': bad regular expression (" + e.what() + ")");
  }
}

void Placement::add_sites(const std::vector<std::string>& sites, const std::string& uri) {
  TAPML_REQUIRE(!uri.empty(), "placement: no backend for the sites");
  for (const std::string& s : sites) sites_[s] = uri;
}

const std::string& Placement::uri_for(const std::string& site, Op op) const {
  if (auto it = sites_.find(site); it != sites_.end()) return it->second;
  const std::string_view name = op_name(op);
  for (const Rule& r : rules_)
    if (std::regex_search(site, r.re) || std::regex_search(name.begin(), name.end(), r.re))
      return r.uri;
  return default_;
}

std::vector<std::string> Placement::uris() const {
  std::vector<std::string> out{default_};
  for (const auto& [site, uri] : sites_)
    if (std::find(out.begin(), out.end(), uri) == out.end()) out.push_back(uri);
  for (const Rule& r : rules_)
    if (std::find(out.begin(), out.end(), r.uri) == out.end()) out.push_back(r.uri);
  return out;
}

}  // namespace tapml

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
  // No '=' outside brackets: an unbalanced pattern hides it. Name the pattern when that is it.
  if (size_t eq = rule.find('='); eq != std::string::npos && eq > 0)
    Pattern(rule.substr(0, eq), "placement rule '" + rule + "': the pattern");
  throw UsageError("placement rule '" + rule + "' is not REGEX=BACKEND (e.g. 'matmul=cpu')");
}

void Placement::add_rule(const std::string& pattern, const std::string& uri) {
  TAPML_REQUIRE_USAGE(!pattern.empty(), "placement rule with an empty pattern");
  TAPML_REQUIRE_USAGE(!uri.empty(), "placement rule '" + pattern + "=' names no backend");
  rules_.push_back({Pattern(pattern, "placement rule '" + pattern + "=" + uri + "': the pattern"),
                    uri});
}

void Placement::add_sites(const std::vector<std::string>& sites, const std::string& uri) {
  TAPML_REQUIRE_USAGE(!uri.empty(), "placement: no backend for the sites");
  for (const std::string& s : sites) sites_[s] = uri;
}

const std::string& Placement::uri_for(const std::string& site, Op op) const {
  if (auto it = sites_.find(site); it != sites_.end()) return it->second;
  for (const Rule& r : rules_)
    if (r.pattern.search(site) || r.pattern.search(op_name(op))) return r.uri;
  return default_;
}

void Placement::check_rules(const std::vector<SiteCall>& sites) const {
  for (const Rule& r : rules_) {
    bool used = std::any_of(sites.begin(), sites.end(), [&](const SiteCall& s) {
      return r.pattern.search(s.site.str()) || r.pattern.search(op_name(s.op));
    });
    if (used) continue;
    std::vector<Op> seen;
    std::string ops;
    for (const SiteCall& s : sites)
      if (std::find(seen.begin(), seen.end(), s.op) == seen.end()) {
        seen.push_back(s.op);
        ops += (ops.empty() ? "" : ", ") + std::string(op_name(s.op));
      }
    throw UsageError("placement rule '" + r.pattern.text() + "=" + r.uri +
                     "' matches no site and no op of this model (ops: " + ops +
                     "; sites: " + site_list_text(sites) + ")");
  }
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

// Which backend runs each site: ordered rules "REGEX=URI" searched in the site name and in
// the op name (first match wins; RE2 syntax, see core/pattern.h), and a default backend for
// everything else.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

#include "core/pattern.h"
#include "model/sites.h"
#include "ops/op.h"

namespace tapml {

class Placement {
 public:
  explicit Placement(std::string default_uri = "cpu") : default_(std::move(default_uri)) {}
  // Parses "REGEX=URI", split at the first '=' that is not escaped or inside brackets (the
  // URI may carry '=' in its query). Throws Error for a bad regex or a missing '='.
  void add_rule(const std::string& rule);
  void add_rule(const std::string& pattern, const std::string& uri);
  // Puts exactly these sites on `uri`, ahead of every rule. Looked up by name, so a
  // migration step can place hundreds of sites without hundreds of regular expressions.
  void add_sites(const std::vector<std::string>& sites, const std::string& uri);

  const std::string& uri_for(const std::string& site, Op op) const;
  // A rule that matches no site and no op of the model places nothing, which is almost
  // always a typo: UsageError naming the rule and the model's ops and sites.
  void check_rules(const std::vector<SiteCall>& sites) const;
  const std::string& default_uri() const { return default_; }
  // Every URI this placement may use (default first).
  std::vector<std::string> uris() const;

 private:
  struct Rule {
    Pattern pattern;
    std::string uri;
  };
  std::string default_;
  std::unordered_map<std::string, std::string> sites_;
  std::vector<Rule> rules_;
};

}  // namespace tapml

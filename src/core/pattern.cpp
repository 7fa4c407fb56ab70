#include "core/pattern.h"

#include <re2/re2.h>

#include "core/error.h"

namespace tapml {

Pattern::Pattern(const std::string& pattern, const std::string& what) : text_(pattern) {
  if (pattern.empty()) return;
  RE2::Options o;
  o.set_log_errors(false);
  auto re = std::make_shared<re2::RE2>(pattern, o);
  TAPML_REQUIRE_USAGE(re->ok(), what + " '" + pattern + "' is not a valid regular expression: " +
                              re->error());
  re_ = std::move(re);
}

bool Pattern::search(std::string_view text) const {
  return !re_ || RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), *re_);
}

}  // namespace tapml

// Regular expressions given by users (placement rules, --op and --site filters, fault sites),
// matched in time linear in the text (RE2), so no pattern can make the tool hang; a pattern
// like (a*)*b is as fast as any other. The syntax is RE2's: Perl-like, without back-references
// or look-around. Matching searches anywhere in the text, as grep does; anchor with ^ and $.
#pragma once
#include <memory>
#include <string>
#include <string_view>

namespace re2 {
class RE2;
}

namespace tapml {

class Pattern {
 public:
  // Matches everything.
  Pattern() = default;
  // Error "WHAT 'PATTERN' is not a valid regular expression: REASON" for a bad pattern.
  Pattern(const std::string& pattern, const std::string& what);

  // Whether the pattern occurs anywhere in `text` (always true for the empty pattern).
  bool search(std::string_view text) const;
  const std::string& text() const { return text_; }
  bool empty() const { return text_.empty(); }

 private:
  std::string text_;
  std::shared_ptr<const re2::RE2> re_;  // null for the empty pattern
};

}  // namespace tapml

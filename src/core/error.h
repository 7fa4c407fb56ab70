// Errors that reach a user: one exception type whose message says what to do.
#pragma once
#include <stdexcept>
#include <string>

namespace tapml {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// An Error in what the user wrote rather than in what happened while working: a malformed
// value, a name that does not exist, options that contradict each other, a filter that
// matches nothing. The command line exits with status 2 for these, 3 for other Errors.
class UsageError : public Error {
 public:
  using Error::Error;
};

// Throws Error(message) when cond is false. A macro so that the message, often built from
// several strings, costs nothing unless the check fails: checks run on every op call.
#define TAPML_REQUIRE(cond, message)            \
  do {                                          \
    if (!(cond)) throw ::tapml::Error(message); \
  } while (0)

// The same for a condition on what the user wrote (throws UsageError).
#define TAPML_REQUIRE_USAGE(cond, message)           \
  do {                                               \
    if (!(cond)) throw ::tapml::UsageError(message); \
  } while (0)

}  // namespace tapml

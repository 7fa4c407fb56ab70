// Errors that reach a user: one exception type whose message says what to do.
#pragma once
#include <stdexcept>
#include <string>

namespace tapml {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws Error(message) when cond is false. A macro so that the message, often built from
// several strings, costs nothing unless the check fails: checks run on every op call.
#define TAPML_REQUIRE(cond, message)            \
  do {                                          \
    if (!(cond)) throw ::tapml::Error(message); \
  } while (0)

}  // namespace tapml

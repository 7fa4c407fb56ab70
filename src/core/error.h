// Errors that reach a user: one exception type whose message says what to do.
#pragma once
#include <stdexcept>
#include <string>

namespace tapml {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Throws Error(message) when cond is false. For validating untrusted input.
inline void require(bool cond, const std::string& message) {
  if (!cond) throw Error(message);
}

}  // namespace tapml

// Assertions about tapml::Error messages.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"

namespace tapml::testing {

// The message of the Error that `fn` throws; fails the current test when it throws none.
template <class Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected tapml::Error";
  return "";
}

inline ::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\n  message: " << text << "\n  lacks:   " << part;
}

}  // namespace tapml::testing

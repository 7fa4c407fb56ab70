// Where tests find ../shared data and the built tapml binary.
#pragma once
#include <string>

namespace tapml::testing {

// $TAPML_SHARED, else <repo>/../shared. Fails the current test (via ADD_FAILURE + throw) with
// a clear message if `relative` does not exist below it.
std::string shared_path(const std::string& relative);
// The tapml executable built alongside the tests.
std::string tapml_binary();

struct CommandResult {
  int exit_code;
  std::string out;
  std::string err;
};
// Runs `args` (shell-quoted by the caller) through /bin/sh, capturing stdout and stderr.
CommandResult run_command(const std::string& command_line);
// Quotes one argument for /bin/sh.
std::string shell_quote(const std::string& arg);
// A shell command line running the tapml binary with `args` (already quoted).
inline std::string tapml_command(const std::string& args) {
  return shell_quote(tapml_binary()) + " " + args;
}
// A fresh empty directory under the system temp dir; all of them are removed at exit.
std::string temp_dir();

}  // namespace tapml::testing

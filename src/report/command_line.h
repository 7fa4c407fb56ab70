// Command lines the reports print for a user to paste into a POSIX shell.
#pragma once
#include <string>
#include <vector>

namespace tapml {

// `s` in single quotes, with any single quote in it written as '\''.
std::string shell_quote(const std::string& s);
// `s` as is when the shell reads it as one plain word (letters, digits, and - _ . / : = , + @ %),
// else shell_quote(s).
std::string shell_word(const std::string& s);
// The words joined by spaces, each as shell_word writes it: the command line that ran,
// e.g. from main's argv.
std::string command_line(const std::vector<std::string>& words);

}  // namespace tapml

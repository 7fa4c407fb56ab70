// The tapml subcommands. Each file adds one to the app; the callbacks only parse arguments
// and call into the library.
#pragma once
#include <CLI/CLI.hpp>

namespace tapml::cli {

void add_run(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_info(CLI::App& app);

}  // namespace tapml::cli

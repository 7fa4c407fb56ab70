// The tapml subcommands. Each file adds one to the app; the callbacks only parse arguments
// and call into the library. Commands that run models share the process's devices.
#pragma once
#include <CLI/CLI.hpp>

#include "runtime/device_pool.h"

namespace tapml::cli {

void add_run(CLI::App& app, DevicePool& devices);
void add_tokenize(CLI::App& app);
void add_info(CLI::App& app);
void add_corpus(CLI::App& app);
void add_carve(CLI::App& app, DevicePool& devices);
void add_test(CLI::App& app, DevicePool& devices);
void add_compare(CLI::App& app, DevicePool& devices);
void add_migrate(CLI::App& app, DevicePool& devices);
void add_demo(CLI::App& app, DevicePool& devices);
void add_serve(CLI::App& app);

// Thrown by a command to end with this exit status after it has said everything itself
// (e.g. tests failed and the summary is printed).
struct ExitCode {
  int code;
};

}  // namespace tapml::cli

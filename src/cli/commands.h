// The tapml subcommands. Each file adds one to the app; the callbacks only parse arguments
// and call into the library. Commands that run models share the process's devices.
#pragma once
#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "core/atomic_file.h"
#include "core/error.h"
#include "runtime/device_pool.h"

namespace tapml::cli {

void add_run(CLI::App& app, DevicePool& devices);
void add_tokenize(CLI::App& app);
void add_info(CLI::App& app);
void add_corpus(CLI::App& app);
void add_carve(CLI::App& app, DevicePool& devices);
void add_test(CLI::App& app, DevicePool& devices);
void add_compare(CLI::App& app, DevicePool& devices);
// `argv` is the whole command line, recorded in the reports these write.
void add_migrate(CLI::App& app, DevicePool& devices, const std::vector<std::string>& argv);
void add_demo(CLI::App& app, DevicePool& devices, const std::vector<std::string>& argv);
void add_serve(CLI::App& app);
void add_serve_web(CLI::App& app);
void add_convert(CLI::App& app);

// The exit statuses of every command.
struct ExitStatus {
  static constexpr int kOk = 0;
  static constexpr int kChecksFailed = 1;  // tests, sites or a migration failed; all was said
  static constexpr int kUsage = 2;         // the command line is wrong (nothing was done)
  static constexpr int kError = 3;         // something failed while working (a file, a device)
  static constexpr int kInternal = 4;      // a bug in tapml
};
inline constexpr const char* kExitStatusHelp =
    "Exit status: 0 success; 1 checks failed (tests, sites or a migration verdict; the output\n"
    "says which); 2 usage error (a bad flag or value, a filter or rule that matches nothing;\n"
    "nothing was run); 3 an error while working (a file, a device, a connection); 4 internal\n"
    "error.";

// Thrown by a command to end with this exit status after it has said everything itself
// (e.g. tests failed and the summary is printed).
struct ExitCode {
  int code;
};

// A seed: a decimal number from 0 to 2^64 - 1 (no sign, nothing else).
inline const CLI::Validator kSeed(
    [](std::string& text) -> std::string {
      uint64_t v = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (text.empty() || ec != std::errc() || end != text.data() + text.size())
        return "a seed is a whole number from 0 to 18446744073709551615, not '" + text + "'";
      return {};
    },
    "SEED");
// A finite number above 0.
inline const CLI::Validator kPositive(
    [](std::string& text) -> std::string {
      char* end = nullptr;
      double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || !std::isfinite(v) || v <= 0)
        return "must be a finite number above 0, not '" + text + "'";
      return {};
    },
    "POSITIVE");

// --kv-cache f32|f16 into `kv_cache`: the dtype every run of the command keeps keys and
// values in. `where` ends the help (what happens on a backend without f16 cache kernels).
inline void add_kv_cache_option(CLI::App* c, std::string& kv_cache, const std::string& where) {
  c->add_option("--kv-cache", kv_cache,
                "dtype of the KV cache: f32, or f16 (half the memory; every key and value "
                "rounded to f16). cpu and ref run an f16 cache; " +
                    where)
      ->check(CLI::IsMember({"f32", "f16"}))
      ->capture_default_str();
}

// "backend URI: ref, cpu, vulkan, ... (tapml info --backends lists them)": the kinds this
// build registered, for --backend's help.
std::string backend_help(const std::string& what = "backend URI");

// Checks the output paths a command was given, before it does any work: a report must not
// be lost after a long run to a path it cannot be written to (core/atomic_file.h's rules).
// Pairs of (path, flag); empty paths are skipped.
inline void check_outputs(std::initializer_list<std::pair<const std::string&, const char*>> outs) {
  for (const auto& [path, flag] : outs)
    if (!path.empty()) check_output_path(path, flag);
}

// Runs `checks` of the command line's values; an Error they throw is a usage error (exit 2):
// what the user wrote is wrong, and nothing has been done yet.
template <class F>
void check_usage(F&& checks) {
  try {
    checks();
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
}

}  // namespace tapml::cli

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/version.h"

int main(int argc, char** argv) {
  // Every device a command opens, opened once; outlives the commands that use it.
  tapml::DevicePool devices;
  const std::vector<std::string> words(argv, argv + argc);
  CLI::App app{
      "tapml: bring LLMs up on new compute platforms top-down.\n"
      "Run a model on a trusted backend, place any op on another, and compare."};
  app.require_subcommand(1);
  app.footer(tapml::cli::kExitStatusHelp);
  app.set_version_flag("--version", std::string("tapml ") + tapml::kTapmlVersion);
  tapml::cli::add_run(app, devices);
  tapml::cli::add_tokenize(app);
  tapml::cli::add_info(app);
  tapml::cli::add_convert(app);
  tapml::cli::add_corpus(app);
  tapml::cli::add_carve(app, devices);
  tapml::cli::add_test(app, devices);
  tapml::cli::add_compare(app, devices);
  tapml::cli::add_migrate(app, devices, words);
  tapml::cli::add_demo(app, devices, words);
  tapml::cli::add_serve(app);
  tapml::cli::add_serve_web(app);
  for (CLI::App* sub : app.get_subcommands({})) {
    std::string footer = sub->get_footer();
    sub->footer(footer + (footer.empty() ? "" : "\n\n") + tapml::cli::kExitStatusHelp);
  }
  std::string names;
  bool known = false;
  for (const CLI::App* sub : app.get_subcommands({})) {
    names += (names.empty() ? "" : ", ") + sub->get_name();
    known = known || (argc > 1 && sub->get_name() == argv[1]);
  }
  using tapml::cli::ExitStatus;
  if (argc > 1 && argv[1][0] != '-' && !known) {
    std::fprintf(stderr, "tapml: unknown command '%s' (commands: %s; see --help)\n", argv[1],
                 names.c_str());
    return ExitStatus::kUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "tapml: %s (see --help)\n", e.what());
    return ExitStatus::kUsage;
  } catch (const tapml::cli::ExitCode& e) {
    return e.code;
  } catch (const tapml::UsageError& e) {
    std::fprintf(stderr, "tapml: %s\n", e.what());
    return ExitStatus::kUsage;
  } catch (const tapml::Error& e) {
    std::fprintf(stderr, "tapml: %s\n", e.what());
    return ExitStatus::kError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tapml: internal error: %s\n", e.what());
    return ExitStatus::kInternal;
  }
  return ExitStatus::kOk;
}

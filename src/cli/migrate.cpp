#include "migrate/migrate.h"

#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "cli/json_output.h"
#include "cli/progress.h"
#include "cli/prompts.h"
#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/model_file.h"
#include "report/migrate_html.h"
#include "report/migrate_report.h"
#include "runtime/generate.h"
#include "tokenizer/load.h"

namespace tapml::cli {

namespace {
struct MigrateArgs {
  std::string model, backend, source = "ref", strategy = "auto", json_out, html_out,
                              kv_cache = "f32";
  PromptArgs prompts;
  int steps = 64;
  double nmse_threshold = 0;
  bool fail_on_latent = false;
  Verbosity verbosity;
};

void migrate_command(const MigrateArgs& a, DevicePool& devices,
                     const std::vector<std::string>& argv) {
  check_outputs({{a.json_out, "--json"}, {a.html_out, "--html"}});
  ModelFile model = load_model(a.model);
  Prompts prompts = resolve_prompts(a.prompts, model);
  MigrateOptions o;
  o.source = a.source;
  o.target = a.backend;
  o.strategy = a.strategy;
  o.steps = a.steps;
  o.kv_cache = dtype_from_name(a.kv_cache);
  o.nmse_threshold = a.nmse_threshold;
  o.prompts = prompts.ids;
  o.stop_tokens = prompts.stop_tokens;
  o.pool = &devices;
  // Step results as lines; the runs between them as one progress line.
  Progress progress("migrating", "positions", 0, a.verbosity.quiet);
  std::string activity;
  o.progress = [&](const std::string& line) { progress.say(line); };
  o.on_positions = [&](const std::string& what, int64_t done, int64_t total) {
    if (what != activity) {
      activity = what;
      progress.restart(what, total);
      if (a.verbosity.verbose) progress.say("  " + what);
    }
    progress.update(done);
  };

  MigrateReport r = migrate(model, o);
  progress.finish();
  r.prompt_texts = prompts.labels;
  nlohmann::json j = to_json(r, report_context(argv));
  if (!a.json_out.empty())
    write_output(a.json_out,
                 j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  if (!a.html_out.empty()) write_output(a.html_out, migrate_html(j));

  std::fputs(migrate_text(r).c_str(), stdout);
  if (!a.html_out.empty()) std::printf("HTML report: %s\n", a.html_out.c_str());
  if (!a.json_out.empty()) std::printf("JSON report: %s\n", a.json_out.c_str());
  if (r.status != "pass") throw ExitCode{ExitStatus::kChecksFailed};
  if (a.fail_on_latent && !r.latent.empty()) {
    std::printf("exit status 1: %zu latent site%s and --fail-on-latent\n", r.latent.size(),
                r.latent.size() == 1 ? "" : "s");
    throw ExitCode{ExitStatus::kChecksFailed};
  }
}
}  // namespace

void add_migrate(CLI::App& app, DevicePool& devices, const std::vector<std::string>& argv) {
  auto a = std::make_shared<MigrateArgs>();
  CLI::App* c = app.add_subcommand(
      "migrate", "Move a model to a target backend step by step and pin what breaks it");
  c->footer(
      "Each step runs the model with some sites on the target and the rest on the source,\n"
      "teacher-forced on the source's tokens, and compares every position's logits with the\n"
      "all-source run (NMSE against a threshold calibrated from a plain-f32 run (8-bit activations "
      "too for quantized weights), KL, top-1).\n"
      "Strategies: kinds (one op kind at a time), layers (layer by layer), bisect (delta\n"
      "debugging over all sites), auto (kinds, going on past a failing kind with it kept on\n"
      "the source, then bisect inside each failing kind). Every call is also compared in\n"
      "isolation: culprits are grouped by cause (one op, or one weight type their failing\n"
      "calls share), and sites that fail alone but leave the output unchanged are listed as\n"
      "latent. Exit status 0 only for a pass (and, with --fail-on-latent, no latent site).\n"
      "Example:\n"
      "  tapml migrate --model stories260K.gguf --backend "
      "'faulty:cpu?fault=rope_pairing&site=blk\\.2\\.'\n"
      "                --html report.html");
  c->add_option("--model", a->model, "model file: GGUF or llama2.c checkpoint")->required();
  c->add_option("--backend", a->backend, backend_help("target backend URI"))->required();
  c->add_option("--source", a->source, "source backend URI")->capture_default_str();
  c->add_option("--strategy", a->strategy, "kinds | layers | bisect | auto")
      ->check(CLI::IsMember({"kinds", "layers", "bisect", "auto"}))
      ->capture_default_str();
  add_prompt_options(c, a->prompts, false);
  c->add_option("--steps", a->steps, "positions per prompt, prompt included")
      ->check(CLI::Range(2, 1 << 20))
      ->capture_default_str();
  add_kv_cache_option(c, a->kv_cache,
                      "a target without f16 cache kernels refuses kv_store and attention (those "
                      "sites stay on the source)");
  c->add_option("--nmse-threshold", a->nmse_threshold,
                "end-to-end NMSE a step may reach, above 0 (default: 100x that of a plain-f32 "
                "run)")
      ->check(kPositive);
  c->add_flag("--fail-on-latent", a->fail_on_latent,
              "exit 1 also when the output passes but some site fails in isolation (latent)");
  c->add_option("--json", a->json_out, "write the JSON report here");
  c->add_option("--html", a->html_out, "write the HTML report here");
  add_verbosity(c, a->verbosity);
  c->callback([a, &devices, &argv] { migrate_command(*a, devices, argv); });
}

}  // namespace tapml::cli

#include "migrate/compare.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/progress.h"
#include "cli/prompts.h"
#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/model_file.h"
#include "model/sites.h"
#include "report/compare_report.h"
#include "runtime/generate.h"
#include "tokenizer/load.h"

namespace tapml::cli {

namespace {
struct CompareArgs {
  std::string model, backend, source = "ref", site, json_out, kv_cache = "f32";
  Verbosity verbosity;
  PromptArgs prompts;
  int steps = 64;
};

void compare(const CompareArgs& a, DevicePool& devices) {
  check_outputs({{a.json_out, "--json"}});
  // Opened first: a mistyped URI is reported before the model is read.
  devices.open(a.backend);
  ModelFile model = load_model(a.model);
  check_usage([&] { check_site_pattern(model_sites(model), a.site, "--site"); });
  Prompts prompts = resolve_prompts(a.prompts, model);
  CompareOptions o;
  o.source = a.source;
  o.target = a.backend;
  o.site_regex = a.site;
  o.steps = a.steps;
  o.kv_cache = dtype_from_name(a.kv_cache);
  o.stop_tokens = prompts.stop_tokens;
  o.pool = &devices;
  o.prompts = prompts.ids;
  const bool tty = isatty(2);
  if (tty)
    o.progress = [](size_t i, size_t n, int produced, int64_t compared) {
      if (produced % 4 == 0)
        std::fprintf(stderr, "\rcomparing prompt %zu/%zu: %d tokens, %lld calls compared", i + 1, n,
                     produced, (long long)compared);
    };
  CompareReport r = compare_model(model, o);
  r.prompt_texts = prompts.labels;
  if (tty) std::fprintf(stderr, "\r%*s\r", 60, "");
  if (!a.json_out.empty())
    write_output(a.json_out,
                 to_json(r).dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  std::fputs(compare_text(r).c_str(), stdout);
  if (!r.pass()) throw ExitCode{ExitStatus::kChecksFailed};
}
}  // namespace

void add_compare(CLI::App& app, DevicePool& devices) {
  auto a = std::make_shared<CompareArgs>();
  CLI::App* c = app.add_subcommand(
      "compare", "Compare every op call on a target, each fed the source's inputs");
  c->footer(
      "Runs the model on the source backend; every op call is also run on the target with\n"
      "the source's inputs, so no error propagates: each site's error is its own. Prints one\n"
      "line per site (calls, failures, worst error as a multiple of its tolerance), then the\n"
      "sites the target cannot run. Exit status 1 when a site failed; sites that could not be\n"
      "compared are reported but do not fail the run.\n"
      "Examples:\n"
      "  tapml compare --model stories260K.gguf --backend cpu\n"
      "  tapml compare --model stories260K.gguf --backend 'faulty:cpu?fault=matmul_tail'\n"
      "                --prompt 'Once upon a time' --steps 32 --json compare.json");
  c->add_option("--model", a->model, "model file: GGUF or llama2.c checkpoint")->required();
  c->add_option("--backend", a->backend, backend_help("target backend URI"))->required();
  c->add_option("--source", a->source, "source backend URI")->capture_default_str();
  add_prompt_options(c, a->prompts, false);
  c->add_option("--steps", a->steps, "positions per prompt, prompt included")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  add_kv_cache_option(
      c, a->kv_cache,
      "a target without f16 cache kernels refuses kv_store and attention calls (not comparable)");
  c->add_option("--site", a->site, "only sites matching this regular expression");
  c->add_option("--json", a->json_out, "write the JSON report here");
  add_verbosity(c, a->verbosity);
  c->callback([a, &devices] { compare(*a, devices); });
}

}  // namespace tapml::cli

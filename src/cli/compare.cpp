#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "backends/builtin.h"
#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "migrate/isolated.h"
#include "model/model_file.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "tokenizer/load.h"

namespace tapml::cli {

namespace {
struct CompareArgs {
  std::string model, tokenizer, backend, source = "ref", site, json_out;
  std::vector<std::string> prompts;
  int steps = 64;
};

// "error" when the target threw instead of producing outputs.
std::string check_label(const SiteLocal& s) {
  return s.worst_threw ? "error" : check_name(s.worst_check);
}

nlohmann::json ratio_json(double r) { return std::isfinite(r) ? nlohmann::json(r) : nullptr; }

nlohmann::json report_json(const CompareArgs& a, const std::vector<std::string>& prompts,
                           const IsolatedComparator& cmp) {
  nlohmann::json sites = nlohmann::json::array();
  int64_t compared = 0, failed = 0, not_comparable = 0, calls = 0, failed_calls = 0;
  for (const SiteLocal& s : cmp.sites()) {
    sites.push_back({{"site", s.site},
                     {"op", std::string(op_name(s.op))},
                     {"layer", s.layer},
                     {"calls", s.calls},
                     {"failed", s.failed},
                     {"unsupported", s.unsupported},
                     {"worst_ratio", ratio_json(s.worst_ratio)},
                     {"worst_error", ratio_json(s.worst_error)},
                     {"worst_check", check_label(s)},
                     {"worst_detail", s.worst_detail},
                     {"worst_phase", s.worst_phase},
                     {"unsupported_reason", s.unsupported_reason}});
    compared += s.compared() > 0;
    failed += s.failed > 0;
    not_comparable += s.unsupported > 0;
    calls += s.calls;
    failed_calls += s.failed;
  }
  return {{"format", "tapml-compare-report"},
          {"version", 1},
          {"model", a.model},
          {"source", a.source},
          {"target", a.backend},
          {"prompts", prompts},
          {"steps", a.steps},
          {"sites", sites},
          {"summary",
           {{"sites", cmp.sites().size()},
            {"sites_compared", compared},
            {"sites_failed", failed},
            {"sites_not_comparable", not_comparable},
            {"calls", calls},
            {"calls_compared", cmp.calls_compared()},
            {"calls_failed", failed_calls},
            {"pass", failed == 0}}}};
}

// Prints the site table, the coverage section and the summary; returns the sites that failed.
int64_t print_report(const CompareArgs& a, const IsolatedComparator& cmp) {
  int64_t compared = 0, failed = 0, not_comparable = 0;
  std::printf("isolated comparison of %s against %s (each call fed the source's inputs)\n",
              a.backend.c_str(), a.source.c_str());
  std::printf("     %-24s %-10s %7s %7s %10s  %s\n", "site", "op", "calls", "failed", "worst/tol",
              "check");
  for (const SiteLocal& s : cmp.sites()) {
    if (s.compared() == 0) continue;  // listed under coverage only
    compared++;
    failed += s.failed > 0;
    std::printf("%-4s %-24s %-10s %7lld %7lld %10.3g  %s\n", s.failed ? "FAIL" : "ok",
                s.site.c_str(), std::string(op_name(s.op)).c_str(), (long long)s.compared(),
                (long long)s.failed, s.worst_ratio, check_label(s).c_str());
    if (s.failed)
      std::printf("       worst at %s: %s\n", s.worst_phase.c_str(), s.worst_detail.c_str());
  }
  for (const SiteLocal& s : cmp.sites()) not_comparable += s.unsupported > 0;
  if (not_comparable) {
    std::printf("coverage: %lld sites could not be compared (the target cannot run them):\n",
                (long long)not_comparable);
    for (const SiteLocal& s : cmp.sites())
      if (s.unsupported)
        std::printf("  n/a  %-24s %-10s %lld of %lld calls: %s\n", s.site.c_str(),
                    std::string(op_name(s.op)).c_str(), (long long)s.unsupported,
                    (long long)s.calls, s.unsupported_reason.c_str());
  } else {
    std::printf("coverage: every call was compared\n");
  }
  std::printf("%lld sites compared, %lld failed, %lld not comparable\n", (long long)compared,
              (long long)failed, (long long)not_comparable);
  if (failed == 0 && not_comparable > 0)
    std::printf("note: no compared site failed, but %lld sites were not compared on %s\n",
                (long long)not_comparable, a.backend.c_str());
  return failed;
}

void compare(const CompareArgs& a) {
  std::vector<std::string> prompts = a.prompts.empty() ? std::vector<std::string>{""} : a.prompts;
  // Opened first: a mistyped URI is reported before the model is read.
  std::unique_ptr<Backend> target = open_backend(a.backend);
  std::unique_ptr<Backend> plain_f32 = open_backend("ref?acc=f32");
  IsolatedComparator cmp(*target, *plain_f32);
  if (!a.site.empty()) cmp.restrict_sites(a.site);

  ModelFile model = load_model(a.model);
  Tokenizer tok = load_tokenizer(a.tokenizer, model.gguf.get(), model.config.vocab_size);
  Session session(model, Placement(a.source), std::max(model.config.max_seq_len, a.steps));
  session.dispatcher().add_observer(&cmp);

  const bool tty = isatty(2);
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateOptions o;
    o.steps = a.steps;
    o.stop_tokens = {tok.vocab().eos};
    if (model.format == "llama2c") o.stop_tokens.push_back(tok.vocab().bos);
    int produced = 0;
    o.on_token = [&](int) {
      if (tty && ++produced % 4 == 0)
        std::fprintf(stderr, "\rcomparing prompt %zu/%zu: %d tokens, %lld calls compared", i + 1,
                     prompts.size(), produced, (long long)cmp.calls_compared());
    };
    generate(session, tok.encode(prompts[i], true), o);
  }
  if (tty) std::fprintf(stderr, "\r%*s\r", 60, "");
  session.dispatcher().remove_observer(&cmp);

  if (!a.json_out.empty())
    write_file_atomically(
        a.json_out,
        report_json(a, prompts, cmp).dump(1, ' ', false, nlohmann::json::error_handler_t::replace) +
            "\n");
  if (print_report(a, cmp) > 0) throw ExitCode(1);
}
}  // namespace

void add_compare(CLI::App& app) {
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
  c->add_option("--tokenizer", a->tokenizer, "tokenizer file; default: the one in the GGUF");
  c->add_option("--backend", a->backend, "target backend URI")->required();
  c->add_option("--source", a->source, "source backend URI")->capture_default_str();
  c->add_option("--prompt", a->prompts, "a prompt (repeatable; default: one empty prompt)");
  c->add_option("--steps", a->steps, "positions per prompt, prompt included")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  c->add_option("--site", a->site, "only sites matching this regular expression");
  c->add_option("--json", a->json_out, "write the JSON report here");
  c->callback([a] { compare(*a); });
}

}  // namespace tapml::cli

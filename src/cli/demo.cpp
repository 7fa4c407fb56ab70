#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "backend/registry.h"
#include "backends/builtin.h"
#include "backends/faulty/faulty_backend.h"
#include "carve/carve_run.h"
#include "cli/commands.h"
#include "cli/progress.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_text.h"
#include "migrate/migrate.h"
#include "model/model_file.h"
#include "model/sites.h"
#include "replay/replay.h"
#include "report/migrate_html.h"
#include "report/migrate_report.h"
#include "report/test_report.h"
#include "runtime/generate.h"
#include "tokenizer/load.h"

namespace tapml::cli {

namespace {
namespace fs = std::filesystem;

struct DemoArgs {
  std::string model, tokenizer, out = "tapml-demo", fault = "rope_pairing", site = "blk.2.rope_q";
  int steps = 64;
  Verbosity verbosity;
};

// The best backend this build can open, as the target to bring up: a GPU API first.
std::string best_backend() {
  register_builtin_backends();
  for (const char* scheme : {"cuda", "vulkan", "opencl", "cpu"})
    for (const BackendKind& k : registered_backends())
      if (k.scheme == scheme) return scheme;
  return "cpu";
}

std::string default_model() {
  const char* env = std::getenv("TAPML_SHARED");
  fs::path shared = env && *env ? fs::path(env) : fs::path("..") / "shared";
  fs::path m = shared / "models" / "stories260K" / "stories260K.gguf";
  TAPML_REQUIRE(fs::exists(m),
                "demo: " + m.string() +
                    " not found; pass --model PATH or set TAPML_SHARED to the shared/ folder");
  return m.string();
}

std::string site_regex(const std::string& site) {
  std::string re = "^";
  for (char c : site) re += (c == '.' ? std::string("\\.") : std::string(1, c));
  return re + "$";
}

void demo(const DemoArgs& a, DevicePool& devices, const std::vector<std::string>& argv) {
  check_usage([&] { fault_ops(a.fault); });  // Error naming the known faults
  std::string model_path = a.model.empty() ? default_model() : a.model;
  ModelFile model = load_model(model_path);
  // The fault's site must be one of the model's, and one where the fault changes something.
  check_usage([&] {
    std::vector<SiteCall> sites = model_sites(model);
    auto it = std::find_if(sites.begin(), sites.end(),
                           [&](const SiteCall& s) { return s.site.str() == a.site; });
    TAPML_REQUIRE(it != sites.end(), "--site " + a.site + " is not a site of this model (sites: " +
                                         site_list_text(sites) + ")");
    std::vector<Op> ops = fault_ops(a.fault);
    std::string names;
    for (Op op : ops) names += (names.empty() ? "" : " or ") + std::string(op_name(op));
    TAPML_REQUIRE(std::find(ops.begin(), ops.end(), it->op) != ops.end(),
                  "--site " + a.site + " runs " + std::string(op_name(it->op)) + ", which fault " +
                      a.fault + " does not change (it changes " + names + ")");
  });
  Tokenizer tok = load_tokenizer(a.tokenizer, model.gguf.get(), model.config.vocab_size,
                                 model.format == "hf" ? model.path : "");
  fs::create_directories(a.out);
  const std::vector<std::string> prompts = {"Once upon a time", "Lily and Tom went to the park",
                                            ""};
  std::vector<std::vector<int>> ids;
  for (const std::string& p : prompts) ids.push_back(tok.encode(p, true));
  std::vector<int> stops = stop_tokens(model, tok.vocab());

  // 1. Carve.
  std::string corpus_path = (fs::path(a.out) / "stories.corpus").string();
  std::printf("1. carving %s on ref over %zu prompts x %d positions ...\n", model_path.c_str(),
              prompts.size(), a.steps);
  std::fflush(stdout);
  CarveStats st;
  {
    Backend& plain = devices.open(kNoiseReference);
    CarveOptions o;
    o.steps = a.steps;
    o.stop_tokens = stops;
    o.pool = &devices;
    Progress progress("   carving", "positions", int64_t(prompts.size()) * a.steps,
                      a.verbosity.quiet);
    o.before_store = [&](TestCase& t) { calibrate_noise(t, plain); };
    o.progress = [&](size_t i, size_t, int produced, const CarveStats&) {
      progress.update(int64_t(i) * a.steps + produced);
    };
    st = carve_to_file(model, ids, prompts, o, corpus_path, true);
  }
  std::printf("   %lld calls seen, %lld signatures, %lld tests kept -> %s\n",
              (long long)st.calls_seen, (long long)st.signatures, (long long)st.tests_kept,
              corpus_path.c_str());

  // 2. Replay on the best backend.
  std::string best = best_backend();
  std::printf("2. replaying the corpus on '%s' ...\n", best.c_str());
  std::fflush(stdout);
  ReplayOptions ro;
  ro.pool = &devices;
  ReplayRun run;
  {
    Progress progress("   replaying", "tests", 0, a.verbosity.quiet);
    ro.on_result = [&](size_t done, size_t total, const TestResult&) {
      progress.set_total(int64_t(total));
      progress.update(int64_t(done));
    };
    run = replay_corpus(corpus_path, best, ro);
  }
  int64_t failed = 0;
  for (auto& [op, s] : summarize(run.results)) failed += s.failed;
  std::string test_json = (fs::path(a.out) / ("test-" + best + ".json")).string();
  write_file_atomically(test_json, json_text(to_json(run), 1) + "\n");
  std::printf("   %zu tests, %lld failed (%s)\n", run.results.size(), (long long)failed,
              test_json.c_str());

  // 3. Migrate to the same backend with a fault injected at one site, and pin it.
  std::string target = "faulty:" + best + "?fault=" + a.fault + "&site=" + site_regex(a.site);
  std::printf("3. migrating to %s (a %s bug hidden at %s) ...\n", target.c_str(), a.fault.c_str(),
              a.site.c_str());
  std::fflush(stdout);
  MigrateOptions mo;
  mo.target = target;
  mo.steps = a.steps;
  mo.prompts = {ids[0]};
  mo.stop_tokens = stops;
  mo.pool = &devices;
  MigrateReport r;
  {
    Progress progress("   migrating", "positions", 0, a.verbosity.quiet);
    std::string activity;
    mo.on_positions = [&](const std::string& what, int64_t done, int64_t total) {
      if (what != activity) progress.restart("   " + (activity = what), total);
      progress.update(done);
    };
    r = migrate(model, mo);
  }
  r.prompt_texts = {prompts[0]};
  nlohmann::json j = to_json(r, report_context(argv));
  std::string json_path = (fs::path(a.out) / "migrate.json").string();
  std::string html_path = (fs::path(a.out) / "migrate.html").string();
  write_file_atomically(json_path, json_text(j, 1) + "\n");
  write_file_atomically(html_path, migrate_html(j));
  std::printf("   verdict: %s after %d end-to-end runs (%.1f s)\n", r.status.c_str(), r.runs,
              r.seconds);
  for (const Culprit& c : r.culprits)
    std::printf("   culprit %s (%s): %s\n", c.site.c_str(), std::string(op_name(c.op)).c_str(),
                c.evidence.c_str());
  std::printf("\nHTML report: %s\nJSON report: %s\n", fs::absolute(html_path).string().c_str(),
              fs::absolute(json_path).string().c_str());
  bool pinned = r.status == "fail" && r.culprits.size() == 1 && r.culprits[0].site == a.site;
  if (!pinned) {
    std::printf("the injected fault was NOT pinned to %s\n", a.site.c_str());
    throw ExitCode{ExitStatus::kChecksFailed};
  }
  if (failed > 0) throw ExitCode{ExitStatus::kChecksFailed};
}
}  // namespace

void add_demo(CLI::App& app, DevicePool& devices, const std::vector<std::string>& argv) {
  auto a = std::make_shared<DemoArgs>();
  CLI::App* c = app.add_subcommand("demo", "Carve stories260K, replay it, and pin an injected bug");
  c->footer(
      "1. carves the model on ref over three prompts; 2. replays the corpus on the best\n"
      "backend this build has; 3. migrates to that backend with a kernel bug injected at one\n"
      "site and shows the bug pinned to it. Writes the corpus and JSON/HTML reports to --out.");
  c->add_option("--model", a->model,
                "model (default: $TAPML_SHARED/models/stories260K/stories260K.gguf)");
  c->add_option("--tokenizer", a->tokenizer,
                "tokenizer file or tokenizer.json folder; default: the one in the GGUF or the "
                "model's folder");
  c->add_option("--out", a->out, "folder for the corpus and reports")->capture_default_str();
  c->add_option("--fault", a->fault, "fault to inject (see faulty backend)")->capture_default_str();
  c->add_option("--site", a->site, "the site to inject it at")->capture_default_str();
  c->add_option("--steps", a->steps, "positions per prompt")
      ->check(CLI::Range(2, 1 << 16))
      ->capture_default_str();
  add_verbosity(c, a->verbosity);
  c->callback([a, &devices, &argv] { demo(*a, devices, argv); });
}

}  // namespace tapml::cli

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "carve/carve_run.h"
#include "carve/corpus.h"
#include "carve/coverage.h"
#include "cli/commands.h"
#include "cli/json_output.h"
#include "cli/progress.h"
#include "cli/prompts.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/model_file.h"
#include "replay/replay.h"
#include "runtime/generate.h"
#include "tokenizer/load.h"

namespace tapml::cli {

namespace {
struct CarveArgs {
  std::string model, out, source = "ref", kv_cache = "f32";
  PromptArgs prompts;
  std::vector<std::string> prompt_files;
  int steps = 256, keep = 3;
  bool json = false, overwrite = false, by_reference = false, cover = false;
  Verbosity verbosity;
};

// --prompt and --prompts FILE lines, as one list of text prompts.
PromptArgs all_prompts(const CarveArgs& a) {
  PromptArgs p = a.prompts;
  for (const std::string& path : a.prompt_files) {
    std::ifstream f(path);
    TAPML_REQUIRE(bool(f), path + ": cannot read the prompts file");
    for (std::string line; std::getline(f, line);)
      if (!line.empty()) p.texts.push_back(line);
  }
  if (p.texts.empty() && p.ids.empty())
    throw UsageError("carve: give at least one --prompt TEXT, --prompt-ids IDS or --prompts FILE");
  return p;
}

void carve(const CarveArgs& a, DevicePool& devices) {
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  PromptArgs prompt_args = all_prompts(a);
  check_usage([&] {
    std::error_code ec;
    if (!std::filesystem::exists(a.out, ec)) return;
    TAPML_REQUIRE(a.overwrite, a.out +
                                   ": already exists (choose another path, or --overwrite to "
                                   "replace it once the new carve is done)");
    Corpus::open(a.out);  // --overwrite replaces a corpus, never a model or anything else
  });
  devices.open(a.source);  // a bad or unreachable source fails before the model is read
  ModelFile model = load_model(a.model);
  Prompts prompts = resolve_prompts(prompt_args, model);

  Backend& plain_f32 = devices.open(kNoiseReference);
  CarveOptions o;
  o.source = a.source;
  o.steps = a.steps;
  o.keep = a.keep;
  o.kv_cache = dtype_from_name(a.kv_cache);
  o.cover = a.cover;
  o.stop_tokens = prompts.stop_tokens;
  o.pool = &devices;
  // Positions are the unit of progress; tests stored keep it moving through a long prefill.
  Progress progress("carving " + a.out, "positions", int64_t(prompts.ids.size()) * a.steps,
                    a.verbosity.quiet);
  int64_t done_before = 0, stored = 0;
  std::string where = "prompt 1/" + std::to_string(prompts.ids.size());
  o.before_store = [&](TestCase& t) {
    calibrate_noise(t, plain_f32);
    progress.update(done_before, where + ", " + std::to_string(++stored) + " tests stored");
  };
  o.progress = [&](size_t i, size_t n, int produced, const CarveStats& st) {
    where = "prompt " + std::to_string(i + 1) + "/" + std::to_string(n);
    done_before = int64_t(i) * a.steps + produced;
    progress.update(done_before, where + ", " + std::to_string(st.tests_kept) + " tests stored");
  };
  CarveResult st;
  try {
    st = carve_to_file(model, prompts.ids, prompts.labels, o, a.out, a.overwrite, [&](Corpus& c) {
      if (a.by_reference) c.store_weights_by_reference(a.model);
    });
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    // Nothing was lost: say where the tests stored so far are.
    std::string partial = partial_corpus_path(a.out);
    throw Error(std::string(e.what()) +
                (std::filesystem::exists(partial)
                     ? " (" + a.out + " is unchanged; the tests carved so far are in " + partial +
                           ", marked unfinished)"
                     : ""));
  }
  progress.finish();
  Corpus corpus = Corpus::open(a.out);
  CorpusSummary sum = corpus.summary();
  Coverage coverage = measure_coverage(corpus.outlines());
  double seconds = std::chrono::duration<double>(clock::now() - t0).count();
  if (a.json) {
    nlohmann::json j;
    j["corpus"] = a.out;
    j["calls_seen"] = st.calls_seen;
    j["signatures"] = st.signatures;
    j["tests_kept"] = st.tests_kept;
    j["calls_per_op"] = st.calls_per_op;
    j["tests_per_op"] = st.tests_per_op;
    j["blob_bytes"] = sum.blob_bytes;
    j["file_bytes"] = sum.file_bytes;
    j["seconds"] = seconds;
    j["coverage"] = coverage_json(coverage, corpus_context(sum.meta));
    if (st.cover.asked)
      j["cover"] = {{"prefill", st.cover.plan.prefill},
                    {"fills", st.cover.plan.fills},
                    {"unreachable", st.cover.plan.unreachable},
                    {"run_tests", st.cover.run_tests},
                    {"twins", st.cover.twins}};
    print_json(j);
    return;
  }
  std::printf("%s: %lld calls seen, %lld signatures, %lld tests kept (keep %d)\n", a.out.c_str(),
              (long long)st.calls_seen, (long long)st.signatures, (long long)st.tests_kept, a.keep);
  std::printf("  %-10s %10s %8s\n", "op", "calls", "tests");
  for (auto& [op, n] : st.calls_per_op)
    std::printf("  %-10s %10lld %8lld\n", op.c_str(), (long long)n,
                (long long)(st.tests_per_op.count(op) ? st.tests_per_op.at(op) : 0));
  std::printf("  tensor bytes stored %.2f MiB (%lld distinct values), file %.2f MiB, %.1f s\n",
              sum.blob_bytes / 1048576.0, (long long)sum.blobs, sum.file_bytes / 1048576.0,
              seconds);
  if (st.cover.asked) {
    const CoverRunPlan& p = st.cover.plan;
    if (p.prefill > 0)
      std::printf(
          "  cover run: prefill %d tokens of prompt %d's sequence, %d more, %d decode step: %lld "
          "tests\n",
          p.prefill, st.cover.from_prompt + 1, p.chunk, p.decode, (long long)st.cover.run_tests);
    std::printf("  cover twins (narrowed copies of carved tests): %lld\n",
                (long long)st.cover.twins);
    for (const std::string& c : p.unreachable)
      std::printf("  cover run cannot reach %s: it does not fit the model's context\n", c.c_str());
  }
  std::vector<CoverageGap> gaps = coverage_gaps(coverage, corpus_context(sum.meta));
  if (gaps.empty())
    std::printf(
        "coverage: every shape class it warns about is exercised (tapml corpus info "
        "shows the table)\n");
  else
    std::printf("coverage (tapml corpus info shows the table):\n%s", gaps_text(gaps).c_str());
}
}  // namespace

void add_carve(CLI::App& app, DevicePool& devices) {
  auto a = std::make_shared<CarveArgs>();
  CLI::App* c = app.add_subcommand("carve", "Record a model run's op calls as a corpus of tests");
  c->footer(
      "Runs the model on the source backend (ref) over every prompt, prefill and each decode\n"
      "step, recording every op call; keeps a few representatives per signature (op,\n"
      "attributes, dtypes, shapes) and calibrates each test's noise floor. Ends with the\n"
      "shape classes the corpus lacks (tapml corpus info shows its coverage table); --cover\n"
      "adds a run over a longer, chunked prompt and narrowed twins of carved tests to fill\n"
      "them.\n"
      "Example:\n"
      "  tapml carve --model stories260K.bin --tokenizer tok512.bin --prompt 'Once upon a time'\n"
      "              --prompt 'Lily and Tom' --out stories.corpus");
  c->add_option("--model", a->model, "model file: GGUF or llama2.c checkpoint")->required();
  add_prompt_options(c, a->prompts, false);
  c->add_option("--prompts", a->prompt_files, "a file with one prompt per line (repeatable)");
  c->add_option("--steps", a->steps, "positions per prompt, prompt included")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  c->add_option("--out", a->out, "corpus file to create")->required();
  c->add_option("--keep", a->keep, "tests kept per signature")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  c->add_option("--source", a->source, "source backend URI")->capture_default_str();
  add_kv_cache_option(c, a->kv_cache,
                      "the corpus then holds f16-cache kv_store and attention tests, which a "
                      "target without f16 cache kernels reports as not offered");
  c->add_flag("--overwrite", a->overwrite, "replace an existing corpus file");
  c->add_flag("--weights-by-reference", a->by_reference,
              "store weights as references to the model file instead of copies");
  c->add_flag("--cover", a->cover,
              "fill missing shape classes: a cover run of the model and narrowed twins");
  c->add_flag("--json", a->json, "print the summary as JSON");
  add_verbosity(c, a->verbosity);
  c->callback([a, &devices] { carve(*a, devices); });
}

}  // namespace tapml::cli

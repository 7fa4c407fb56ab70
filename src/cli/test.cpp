#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>

#include "cli/commands.h"
#include "cli/json_output.h"
#include "cli/progress.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "replay/conformance.h"
#include "replay/replay.h"
#include "report/conformance_report.h"
#include "report/test_report.h"

namespace tapml::cli {

namespace {
struct TestArgs {
  std::string corpus, backend, op, site, json_out, junit_out, shard, stress;
  int max_failures = 20;
  Verbosity verbosity;
  std::vector<int64_t> ids;
  std::vector<std::string> merge;
  bool fail_fast = false, synthetic = false, conformance = false, allow_partial = false;
  bool stress_given = false, stress_strict = false;
  uint64_t seed = 1;
};

std::pair<int, int> parse_shard(const std::string& s) {
  int k = 0, n = 0;
  char extra = 0;
  TAPML_REQUIRE_USAGE(
      std::sscanf(s.c_str(), "%d/%d%c", &k, &n, &extra) == 2 && n >= 1 && k >= 1 && k <= n,
      "--shard " + s + ": expected K/N with 1 <= K <= N (e.g. 2/4)");
  return {k, n};
}

void finish(const TestArgs& a, const ReplayRun& run) {
  if (!a.json_out.empty())
    write_output(a.json_out,
                 to_json(run).dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  if (!a.junit_out.empty()) {
    JunitOptions o;
    if (a.merge.empty()) o.seed = a.seed;  // merged shards do not say which seed they ran
    o.stress_strict = a.stress_strict;
    write_output(a.junit_out, junit_xml(run, o));
  }
  // The summary first, then the failures, as many as asked for: a broken kernel can fail
  // thousands of tests, and the JSON report keeps every one.
  std::fputs(summary_text(run).c_str(), stdout);
  int64_t failed = 0;
  for (const TestResult& r : run.results) {
    if (!r.failed()) continue;
    if (a.max_failures == 0 || failed < a.max_failures)
      std::fputs(failure_text(r, run.corpus, run.backend, run.synthetic, a.seed).c_str(), stdout);
    ++failed;
  }
  if (a.max_failures > 0 && failed > a.max_failures)
    std::printf(
        "... and %lld more failures (--max-failures 0 lists all; %s)\n",
        (long long)(failed - a.max_failures),
        (a.json_out.empty() ? "--json FILE keeps every one" : "all are in " + a.json_out).c_str());
  // Robustness comes after the verdict and, unless asked, leaves the exit status to it.
  std::fputs(robustness_text(run, a.max_failures).c_str(), stdout);
  const bool robustness_failed = std::any_of(run.stress.begin(), run.stress.end(),
                                             [](const StressResult& s) { return s.failed(); });
  if (failed > 0 || (a.stress_strict && robustness_failed))
    throw ExitCode{ExitStatus::kChecksFailed};
}

void merge(const TestArgs& a) {
  std::vector<ReplayRun> shards;
  for (const std::string& path : a.merge) shards.push_back(read_replay_report(path));
  finish(a, merge_runs(shards));
}

void conformance(const TestArgs& a, DevicePool& devices) {
  std::string other = !a.corpus.empty()  ? "--corpus"
                      : !a.merge.empty() ? "--merge"
                      : !a.site.empty()  ? "--site"
                      : !a.ids.empty()   ? "--id"
                      : !a.shard.empty() ? "--shard"
                      : a.synthetic      ? "--synthetic"
                      : a.fail_fast      ? "--fail-fast"
                      : a.stress_given   ? "--stress"
                      : a.stress_strict  ? "--stress-strict"
                                         : "";
  TAPML_REQUIRE_USAGE(other.empty(),
                      "test: --conformance runs the op catalog's own examples, not a corpus; " +
                          other + " does not apply to it (give one or the other)");
  TAPML_REQUIRE_USAGE(!a.backend.empty(), "test: --conformance needs --backend URI");
  ConformanceOptions o;
  o.op_regex = a.op;
  o.seed = a.seed;
  Progress progress("conformance of " + a.backend, "cases", 0, a.verbosity.quiet);
  o.on_result = [&](size_t done, size_t total, const ConformanceResult& r) {
    progress.set_total(int64_t(total));
    progress.update(int64_t(done), std::string(op_name(r.op)) + " " + r.dtypes);
  };
  Backend& target = devices.open(a.backend);
  // The suite is built (the filter checked) before anything runs on the target.
  std::optional<ConformanceSuite> suite;
  check_usage([&] { suite.emplace(devices.open("ref"), devices.open(kNoiseReference), o); });
  ConformanceRun run = suite->run(target);
  progress.finish();
  if (!a.json_out.empty())
    write_output(
        a.json_out,
        conformance_json(run).dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  if (!a.junit_out.empty()) write_output(a.junit_out, conformance_junit_xml(run));
  std::fputs(conformance_table(run).c_str(), stdout);
  if (totals(run).failed > 0) throw ExitCode{ExitStatus::kChecksFailed};
}

void test(const TestArgs& a, DevicePool& devices) {
  check_outputs({{a.json_out, "--json"}, {a.junit_out, "--junit"}});
  if (a.conformance) return conformance(a, devices);
  if (!a.merge.empty()) return merge(a);
  TAPML_REQUIRE_USAGE(!a.corpus.empty() && !a.backend.empty(),
                      "test: give --corpus PATH and --backend URI (or --merge REPORT..., or "
                      "--conformance --backend URI)");
  ReplayOptions o;
  std::tie(o.shard, o.shards) = a.shard.empty() ? std::pair{1, 1} : parse_shard(a.shard);
  o.op_regex = a.op;
  o.site_regex = a.site;
  o.pool = &devices;
  o.ids = a.ids;
  o.synthetic = a.synthetic;
  o.seed = a.seed;
  if (a.stress_given || a.stress_strict)
    o.stress = a.stress.empty() ? default_stress_variants() : parse_stress_variants(a.stress);
  o.fail_fast = a.fail_fast;
  o.allow_partial = a.allow_partial;
  Progress progress("replaying " + a.corpus, "tests", 0, a.verbosity.quiet);
  o.on_result = [&](size_t done, size_t total, const TestResult& r) {
    progress.set_total(int64_t(total));
    if (a.verbosity.verbose)
      progress.say(std::string(r.pass       ? "pass"
                               : r.failed() ? "FAIL"
                                            : "not offered") +
                   " #" + std::to_string(r.id) + " " + r.site + " (" + std::string(op_name(r.op)) +
                   ", " + r.phase + ")");
    progress.update(int64_t(done), r.site);
  };
  ReplayRun run = replay_corpus(a.corpus, a.backend, o);
  progress.finish();
  finish(a, run);
}
}  // namespace

void add_test(CLI::App& app, DevicePool& devices) {
  auto a = std::make_shared<TestArgs>();
  CLI::App* c =
      app.add_subcommand("test",
                         "Replay a carved corpus on a backend and judge every test, or run the "
                         "conformance suite");
  c->footer(
      "Every test runs with guarded, poisoned output buffers and is judged by the oracle\n"
      "(shape/dtype, guard bytes, NaN, Inf, then error against a tolerance calibrated from\n"
      "the test's measured f32 noise). Exit status 0 only when every test passes.\n"
      "Examples:\n"
      "  tapml test --corpus stories.corpus --backend cpu\n"
      "  tapml test --corpus stories.corpus --backend 'faulty:cpu?fault=rope_pairing' --op rope\n"
      "  tapml test --corpus c --backend cpu --shard 2/4 --json s2.json   (then --merge s*.json)\n"
      "\n"
      "--conformance needs no corpus: every op of the catalog, in every input-dtype combination,\n"
      "runs on the backend with the catalog's examples (vector tails, long reductions, large\n"
      "magnitudes, the f16 range, long attention prefixes) and is judged against ref, each case\n"
      "calibrated by its own f32 noise. A combination the backend refuses is listed as\n"
      "\"not offered\" with its reason; that is not a failure. Exit status 0 only when no case\n"
      "fails. --op, --seed, --json and --junit apply; the same seed gives the same cases.\n"
      "  tapml test --conformance --backend vulkan\n"
      "  tapml test --conformance --backend tcp://192.168.1.20:7000 --op attention --json c.json\n"
      "\n"
      "--stress adds robustness: variants of every carved test with its shapes, attributes,\n"
      "ids and positions, but values a small model never reaches and large models do:\n"
      "  xN              activations times N (attention scores and gates grow by N)\n"
      "  near-equal-xN   each row near-equal values (three digits) at N times its range\n"
      "  prefix-N        attention over N keys (the carved ones repeated before them)\n"
      "Default: x10,x40,x100,x1000,near-equal-x10,prefix-4096 (past exp's overflow at 11.09\n"
      "in f16 and 88.7 in f32; large models' outliers reach hundreds to thousands). Each\n"
      "variant's expected outputs come from ref and its noise from ref?acc=f32; a variant\n"
      "where those overflow is skipped. Results follow the verdict in a section of their own\n"
      "(text, --json \"robustness\", --junit suites robustness.OP) and do not change the exit\n"
      "status unless --stress-strict.\n"
      "  tapml test --corpus stories.corpus --backend vulkan --stress\n"
      "  tapml test --corpus stories.corpus --backend vulkan --stress x40,prefix-8192 --op "
      "attention");
  c->add_option("--corpus", a->corpus, "corpus file made by tapml carve");
  c->add_flag("--conformance", a->conformance,
              "run the conformance suite (every op x dtypes x example) instead of a corpus");
  c->add_option("--backend", a->backend, backend_help("target backend URI"));
  c->add_option("--op", a->op, "only tests whose op matches this regular expression");
  c->add_option("--site", a->site, "only tests whose site matches this regular expression");
  c->add_option("--id", a->ids, "only this test (repeatable)");
  c->add_option("--json", a->json_out, "write the canonical JSON report here");
  c->add_option("--junit", a->junit_out, "write JUnit XML here");
  c->add_option("--shard", a->shard,
                "run shard K of N (K/N), for spreading a corpus over machines");
  c->add_option("--merge", a->merge, "merge these shard JSON reports instead of running")
      ->expected(1, -1);
  c->add_flag("--fail-fast", a->fail_fast, "stop at the first failure");
  c->add_flag("--allow-partial", a->allow_partial,
              "replay a corpus whose carve did not finish, or one without tests");
  c->add_option("--max-failures", a->max_failures,
                "list at most this many failures after the summary (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  add_verbosity(c, a->verbosity);
  c->add_flag("--synthetic", a->synthetic,
              "bottom-up baseline: same signatures, uniform random inputs in [-1, 1]");
  c->add_option("--seed", a->seed, "seed of --synthetic inputs and of --conformance examples")
      ->check(kSeed)
      ->capture_default_str();
  CLI::Option* stress =
      c->add_option("--stress", a->stress,
                    "also run stress variants of every test (robustness, apart from the "
                    "verdict): a comma-separated list of xN, near-equal-xN, prefix-N, or none "
                    "for the default set")
          ->expected(0, 1);
  c->add_flag("--stress-strict", a->stress_strict,
              "robustness failures fail the run too (exit 1); implies --stress");
  c->callback([a, stress, &devices] {
    a->stress_given = stress->count() > 0;
    test(*a, devices);
  });
}

}  // namespace tapml::cli

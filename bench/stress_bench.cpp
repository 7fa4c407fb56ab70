// stress_bench: false alarms and misses of carved, synthetic and stress tests.
//
// For each model it carves a corpus on ref, then replays it on correct backends (cpu,
// ref?acc=f32, vulkan, opencl, those this build and machine have: any failing test is a
// false alarm) and on buggy ones (every Llama fault of the faulty backend, and naive_exp:
// textbook f32 exp in softmax and sigmoid, the kernels of tests/support/naive_exp_backend.h),
// with the carved inputs, with --synthetic inputs and with the default stress variants. A bug
// is missed by a mode when no test of the ops it breaks fails there; "carved+stress" is what
// `tapml test --stress` gives (found by either). A fault that changes no output of the
// model's carved tests (matmul_tail where every K is a multiple of 8) is not a bug there
// and is left out of the counts.
//
// Models: stories260K over the three golden prompts, and (unless --family "") a Llama family
// model whose attn_norm and ffn_norm weights have a few channels scaled by --outlier-scale, so
// that its own activations carry outlier features as large models' do.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "backend/host_call.h"
#include "backends/builtin.h"
#include "backends/faulty/faulty_backend.h"
#include "carve/carve_run.h"
#include "carve/corpus.h"
#include "check/oracle.h"
#include "model/model_file.h"
#include "replay/replay.h"
#include "replay/stress.h"
#include "support/naive_exp_backend.h"
#include "tokenizer/load.h"

namespace {

using namespace tapml;

const std::vector<std::string> kFaults = {"softmax_f16", "rope_pairing", "gqa_map",
                                          "kv_offset",   "matmul_tail",  "rmsnorm_eps",
                                          "silu_approx", "exp_overflow"};

struct Target {
  std::string uri;
  bool correct = false;
  std::set<Op> broken;  // the ops a buggy target gets wrong
};

struct Count {
  std::string label;           // model and target
  int64_t failed = 0, of = 0;  // of the broken ops' tests (all tests for a correct target)
  int64_t elsewhere = 0;       // failures of other ops under a buggy target
  std::map<std::string, int64_t> checks;
};

const char* kModes[] = {"carved", "synthetic", "stress", "carved+stress"};

Count count(const ReplayRun& run, const Target& t, bool stress) {
  Count c;
  const std::string faulty = "faulty:cpu?fault=";
  c.label = std::filesystem::path(run.corpus).stem().string() + " " +
            (t.uri.rfind(faulty, 0) == 0 ? t.uri.substr(faulty.size()) : t.uri);
  auto add = [&](Op op, bool failed, const TestResult& r) {
    const bool mine = t.correct || t.broken.count(op);
    if (mine) c.of++;
    if (!failed) return;
    (mine ? c.failed : c.elsewhere)++;
    c.checks[r.error.empty() ? check_name(r.verdict.failed) : "error"]++;
  };
  if (stress) {
    for (const StressResult& s : run.stress)
      if (s.skipped.empty()) add(s.result.op, s.failed(), s.result);
  } else {
    for (const TestResult& r : run.results) add(r.op, r.failed(), r);
  }
  return c;
}

std::string cell(const Count& c, bool correct) {
  std::string s = std::to_string(c.failed) + "/" + std::to_string(c.of);
  if (!correct && c.failed == 0) s += " MISS";
  if (!c.checks.empty()) {
    auto top = std::max_element(c.checks.begin(), c.checks.end(),
                                [](auto& a, auto& b) { return a.second < b.second; });
    s += " " + top->first;
  }
  if (c.elsewhere) s += " +" + std::to_string(c.elsewhere) + " other";
  return s;
}

std::vector<int> ids_of(const nlohmann::json& j) { return j.get<std::vector<int>>(); }

// Channels of every attn_norm and ffn_norm weight scaled by `factor`: the normalized
// activations then carry outlier features in those channels, into every projection.
void plant_outliers(ModelFile& m, double factor, const std::vector<int64_t>& channels) {
  for (auto& [name, w] : m.weights) {
    if (name.find("attn_norm.weight") == std::string::npos &&
        name.find("ffn_norm.weight") == std::string::npos)
      continue;
    std::vector<float> v = w.to_f32();
    for (int64_t c : channels)
      if (c < int64_t(v.size())) v[size_t(c)] *= float(factor);
    w = Tensor::from_f32_as(w.dtype(), w.shape(), v);
  }
}

// Whether the target computes any carved test of its broken ops differently from cpu, the
// backend every buggy target here wraps.
bool has_effect(const std::string& corpus_path, const Target& t) {
  auto bug = open_backend(t.uri), inner = open_backend("cpu");
  Corpus c = Corpus::open(corpus_path);
  for (const TestInfo& info : c.list()) {
    const TestCase test = c.load(info.id);
    if (!t.broken.count(test.op)) continue;
    const auto a = run_host_call(*bug, test.op, test.attrs, test.inputs, test.site.str()).outputs;
    const auto b = run_host_call(*inner, test.op, test.attrs, test.inputs, test.site.str()).outputs;
    for (size_t i = 0; i < a.size(); ++i)
      if (!std::equal(a[i].bytes(), a[i].bytes() + a[i].nbytes(), b[i].bytes())) return true;
  }
  return false;
}

std::map<std::string, ValueRange> own_range(const std::string& corpus_path) {
  std::map<std::string, ValueRange> range;
  Corpus c = Corpus::open(corpus_path);
  for (const TestInfo& info : c.list()) {
    const TestCase t = c.load(info.id);
    const ValueRange r = stressed_range(t);
    auto [at, fresh] = range.try_emplace(stressed_quantity(t.op), r);
    if (!fresh) at->second = {std::min(at->second.low, r.low), std::max(at->second.high, r.high)};
  }
  return range;
}

void bench_model(const std::string& label, const ModelFile& model,
                 const std::vector<std::vector<int>>& prompts, int steps,
                 const std::vector<Target>& targets, const std::string& work,
                 std::map<std::string, std::vector<Count>>& totals) {
  const std::string path = work + "/" + label + ".corpus";
  auto plain = open_backend(kNoiseReference);
  CarveOptions o;
  o.steps = steps;
  o.before_store = [&](TestCase& t) { calibrate_noise(t, *plain); };
  const auto t0 = std::chrono::steady_clock::now();
  CarveStats stats =
      carve_to_file(model, prompts, std::vector<std::string>(prompts.size()), o, path, true);
  std::printf("\n%s: %zu prompts x %d positions carved on ref: %lld tests (%.1f s); own range:",
              label.c_str(), prompts.size(), steps, (long long)stats.tests_kept,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  for (auto& [q, r] : own_range(path)) std::printf(" %s %s", q.c_str(), r.str().c_str());
  std::printf("\n%-30s %-30s %-22s %-22s %-24s\n", "backend", "broken ops", "carved", "synthetic",
              "stress (variants)");
  for (const Target& t : targets) {
    std::string ops;
    for (Op op : t.broken) ops += (ops.empty() ? "" : ",") + std::string(op_name(op));
    if (!t.correct && !has_effect(path, t)) {
      std::printf("%-30s %-30s (changes no output of this model's tests: not counted)\n",
                  t.uri.c_str(), ops.c_str());
      continue;
    }
    std::vector<std::string> cells;
    std::vector<Count> counts;
    for (int mode = 0; mode < 3; ++mode) {
      ReplayOptions ro;
      ro.synthetic = mode == 1;
      if (mode == 2) ro.stress = default_stress_variants();
      ReplayRun run = replay_corpus(path, t.uri, ro);
      counts.push_back(count(run, t, mode == 2));
      cells.push_back(cell(counts.back(), t.correct));
    }
    // carved+stress: what one `tapml test --stress` run reports, verdict and robustness.
    Count both = counts[2];
    both.failed += counts[0].failed;
    both.of += counts[0].of;
    both.elsewhere += counts[0].elsewhere;
    counts.push_back(both);
    for (int mode = 0; mode < 4; ++mode)
      totals[(t.correct ? "correct " : "buggy ") + std::string(kModes[mode])].push_back(
          counts[size_t(mode)]);
    std::printf("%-30s %-30s %-22s %-22s %-24s\n", t.uri.c_str(),
                t.correct ? "(correct)" : ops.c_str(), cells[0].c_str(), cells[1].c_str(),
                cells[2].c_str());
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string shared = std::getenv("TAPML_SHARED") ? std::getenv("TAPML_SHARED") : "../shared";
  std::string family = "llama";
  std::vector<std::string> correct = {"cpu", kNoiseReference, "vulkan", "opencl"};
  int steps = 64, family_steps = 32;
  double outlier_scale = 40;
  CLI::App app{"False alarms and misses of carved, synthetic and stress tests"};
  app.add_option("--shared", shared, "the shared data folder")->capture_default_str();
  app.add_option("--steps", steps, "positions carved per stories260K prompt")
      ->capture_default_str();
  app.add_option("--family", family, "family folder under models/families (\"\": none)")
      ->capture_default_str();
  app.add_option("--family-steps", family_steps, "positions carved from the family's prompt")
      ->capture_default_str();
  app.add_option("--outlier-scale", outlier_scale, "factor of the planted outlier channels")
      ->capture_default_str();
  app.add_option("--correct", correct, "correct backends (those that do not open are left out)");
  CLI11_PARSE(app, argc, argv);

  register_builtin_backends();
  testing::register_naive_exp_backend();
  std::vector<Target> targets;
  for (const std::string& uri : correct) {
    try {
      open_backend(uri);
      targets.push_back({uri, true, {}});
    } catch (const std::exception& e) {
      std::printf("(%s left out: %s)\n", uri.c_str(), e.what());
    }
  }
  for (const std::string& f : kFaults) {
    std::vector<Op> ops = fault_ops(f);
    targets.push_back({"faulty:cpu?fault=" + f, false, {ops.begin(), ops.end()}});
  }
  targets.push_back({"naive_exp", false, {Op::Attention, Op::Swiglu, Op::SigmoidGate}});
  std::printf("stress variants:");
  for (const StressVariant& v : default_stress_variants()) std::printf(" %s", v.name().c_str());
  std::printf("\n");

  const std::string work = std::filesystem::temp_directory_path() / "tapml_stress_bench";
  std::filesystem::create_directories(work);
  std::map<std::string, std::vector<Count>> totals;

  {
    ModelFile stories = load_model(shared + "/models/stories260K/stories260K.gguf");
    Tokenizer tok = load_tokenizer("", stories.gguf.get(), stories.config.vocab_size);
    std::vector<std::vector<int>> prompts;
    for (int i = 0; i < 3; ++i) {
      std::ifstream f(shared + "/golden/stories260K/greedy_" + std::to_string(i) + ".json");
      prompts.push_back(tok.encode(nlohmann::json::parse(f).at("prompt").get<std::string>(), true));
    }
    bench_model("stories260K", stories, prompts, steps, targets, work, totals);
  }
  if (!family.empty()) {
    const std::string dir = shared + "/models/families/" + family;
    ModelFile m = load_model(dir);
    // Three of the 64 channels, as large models carry their outliers in a handful of
    // feature dimensions.
    plant_outliers(m, outlier_scale, {5, 23, 41});
    std::ifstream f(dir + "/golden.json");
    std::vector<int> prompt = ids_of(nlohmann::json::parse(f).at("prompt_ids"));
    char label[64];
    std::snprintf(label, sizeof label, "%s-outliers-x%g", family.c_str(), outlier_scale);
    bench_model(label, m, {prompt}, family_steps, targets, work, totals);
  }

  std::printf("\n%-14s %-40s %-40s\n", "mode", "false alarms (correct backends)",
              "bugs missed (buggy backends)");
  for (const char* mode : kModes) {
    int64_t alarms = 0, judged = 0, missed = 0, bugs = 0, elsewhere = 0;
    std::string which;
    for (const Count& c : totals["correct " + std::string(mode)]) {
      alarms += c.failed;
      judged += c.of;
    }
    for (const Count& c : totals["buggy " + std::string(mode)]) {
      if (c.failed == 0) which += (which.empty() ? "" : ", ") + c.label;
      missed += c.failed == 0;
      bugs++;
      elsewhere += c.elsewhere;
    }
    char a[64], b[96];
    std::snprintf(a, sizeof a, "%lld of %lld judged (%.2g%%)", (long long)alarms, (long long)judged,
                  judged ? 100.0 * double(alarms) / double(judged) : 0.0);
    std::snprintf(b, sizeof b, "%lld of %lld (%.0f%%); other ops failing: %lld", (long long)missed,
                  (long long)bugs, bugs ? 100.0 * double(missed) / double(bugs) : 0.0,
                  (long long)elsewhere);
    std::printf("%-14s %-40s %s%s\n", mode, a, b,
                which.empty() ? "" : ("; missed: " + which).c_str());
  }
  return 0;
}

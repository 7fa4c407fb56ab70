#include "replay/conformance.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <set>

#include "backend/host_call.h"
#include "backends/builtin.h"
#include "core/error.h"
#include "core/pattern.h"
#include "replay/replay.h"

namespace tapml {

namespace {

// The seed of one (op, dtypes) pair's examples: a function of the run's seed and the pair's
// name only, so filtering ops or adding one to the catalog leaves every other case's
// inputs as they were.
uint64_t case_seed(uint64_t seed, std::string_view op, const std::string& dtypes) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (char c : std::string(op) + "|" + dtypes) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
  uint64_t z = seed + h + 0x9E3779B97F4A7C15ull;  // splitmix64's finalizer
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string dtypes_text(const OpDef& def, const std::vector<DType>& combo) {
  std::string s;
  for (size_t i = 0; i < combo.size(); ++i)
    s += (i ? " " : "") + def.inputs[i] + "=" + std::string(dtype_name(combo[i]));
  return s;
}

// Asked before any bytes move.
Support ask_support(const Backend& target, const TestCase& t) {
  std::vector<TensorType> in;
  for (const Tensor& x : t.inputs) in.push_back({x.dtype(), x.shape()});
  return host_call_support(target, t.op, t.attrs, in, t.site.str());
}

}  // namespace

const char* case_status_name(CaseStatus s) {
  switch (s) {
    case CaseStatus::Pass:
      return "pass";
    case CaseStatus::Fail:
      return "fail";
    case CaseStatus::NotOffered:
      return "not offered";
  }
  return "?";
}

std::vector<ConformanceGroup> summarize(const ConformanceRun& run) {
  std::vector<ConformanceGroup> groups;
  for (const ConformanceResult& r : run.results) {
    if (groups.empty() || groups.back().op != r.op || groups.back().dtypes != r.dtypes) {
      groups.emplace_back();
      groups.back().op = r.op;
      groups.back().dtypes = r.dtypes;
    }
    ConformanceGroup& g = groups.back();
    g.cases++;
    switch (r.status) {
      case CaseStatus::Pass:
        g.passed++;
        break;
      case CaseStatus::Fail:
        g.failed++;
        break;
      case CaseStatus::NotOffered:
        g.not_offered++;
        if (g.not_offered_reason.empty()) g.not_offered_reason = r.detail;
        continue;
    }
    g.worst_ratio = std::max(g.worst_ratio, r.ratio);
  }
  return groups;
}

ConformanceTotals totals(const ConformanceRun& run) {
  ConformanceTotals t;
  for (const ConformanceResult& r : run.results) {
    t.cases++;
    (r.status == CaseStatus::Pass   ? t.passed
     : r.status == CaseStatus::Fail ? t.failed
                                    : t.not_offered)++;
  }
  return t;
}

ConformanceSuite::ConformanceSuite(Backend& source, Backend& noise,
                                   const ConformanceOptions& options)
    : source_(source), noise_(noise), options_(options) {
  const Pattern filter(options.op_regex, "op filter");
  std::set<std::string_view> ops;
  for (const OpDef& def : all_ops()) {
    if (!filter.search(def.name)) continue;
    ops.insert(def.name);
    for (const std::vector<DType>& combo : dtype_combinations(def)) {
      std::string dtypes = dtypes_text(def, combo);
      std::mt19937_64 rng(case_seed(options.seed, def.name, dtypes));
      for (OpExample& e : def.examples(combo, rng)) {
        Case c{dtypes, e.label, {}, false};
        c.test.op = def.op;
        c.test.attrs = std::move(e.attrs);
        c.test.inputs = std::move(e.inputs);
        cases_.push_back(std::move(c));
      }
    }
  }
  if (ops.empty()) {
    std::string known;
    for (const OpDef& def : all_ops()) known += (known.empty() ? "" : ", ") + std::string(def.name);
    throw Error("op filter '" + options.op_regex + "' matches no op (ops: " + known + ")");
  }
}

void ConformanceSuite::prepare(Case& c) {
  if (c.prepared) return;
  try {
    c.test.outputs = run_host_call(source_, c.test.op, c.test.attrs, c.test.inputs).outputs;
    calibrate_noise(c.test, noise_);
  } catch (const std::exception& e) {
    throw Error("conformance: " + std::string(op_name(c.test.op)) + " [" + c.dtypes + "] \"" +
                c.label + "\" does not run on the source: " + e.what());
  }
  c.prepared = true;
}

ConformanceRun ConformanceSuite::run(Backend& target) {
  ConformanceRun run{target.info().uri, target.info().device, options_.seed, options_.op_regex, {}};
  const TolerancePolicy policy;
  for (size_t i = 0; i < cases_.size(); ++i) {
    Case& c = cases_[i];
    ConformanceResult r;
    r.op = c.test.op;
    r.dtypes = c.dtypes;
    r.label = c.label;
    auto not_offered = [&](std::string why) {
      r.status = CaseStatus::NotOffered;
      r.check = case_status_name(r.status);
      r.detail = std::move(why);
    };
    if (Support s = ask_support(target, c.test); !s.ok) {
      not_offered(s.reason);
    } else {
      prepare(c);
      TestResult t = replay_test(target, c.test, policy);
      r.seconds = t.seconds;
      // A supports() that depends on more than the call's types may refuse only when asked
      // with real buffers.
      if (!t.not_offered.empty()) {
        not_offered(t.not_offered);
      } else if (!t.error.empty()) {
        r.status = CaseStatus::Fail;
        r.check = "error";
        r.ratio = std::numeric_limits<double>::infinity();
        r.detail = "the target failed to run the call: " + t.error;
      } else {
        r.status = t.pass ? CaseStatus::Pass : CaseStatus::Fail;
        r.check = check_name(t.verdict.failed);
        r.ratio = t.verdict.worst_ratio;
        r.detail = t.verdict.detail;
        r.verdict = std::move(t.verdict);
      }
    }
    run.results.push_back(std::move(r));
    if (options_.on_result) options_.on_result(i + 1, cases_.size(), run.results.back());
  }
  return run;
}

ConformanceRun run_conformance(Backend& target, Backend& source, Backend& noise,
                               const ConformanceOptions& options) {
  ConformanceSuite suite(source, noise, options);
  return suite.run(target);
}

ConformanceRun run_conformance(const std::string& target_uri, const ConformanceOptions& options) {
  std::unique_ptr<Backend> source = open_backend("ref"), noise = open_backend(kNoiseReference);
  // The filter is checked before the target is opened: a typo should not wait for a device.
  ConformanceSuite suite(*source, *noise, options);
  std::unique_ptr<Backend> target = open_backend(target_uri);
  return suite.run(*target);
}

}  // namespace tapml

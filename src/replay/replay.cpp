#include "replay/replay.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>
#include <set>

#include "backend/host_call.h"
#include "carve/corpus.h"
#include "core/error.h"

namespace tapml {

namespace {
int64_t reduction_length(const TestCase& t) {
  std::vector<TensorType> types;
  for (const Tensor& x : t.inputs) types.push_back({x.dtype(), x.shape()});
  return op_def(t.op).reduction_length(types, t.attrs);
}
}  // namespace

TestResult replay_test(Backend& target, const TestCase& test, const TolerancePolicy& policy) {
  TestResult r;
  r.id = test.id;
  r.op = test.op;
  r.site = test.site.str();
  r.phase = test.phase.str();
  r.twin = is_twin(test.kept_because);
  auto t0 = std::chrono::steady_clock::now();
  try {
    HostCallResult got = run_host_call(target, test.op, test.attrs, test.inputs, test.site.str());
    r.verdict =
        judge(policy, test.op, reduction_length(test), test.outputs, got.outputs, got.guards_intact,
              test.noise, allowance(policy, test.op, test.inputs, test.outputs));
    r.pass = r.verdict.pass;
  } catch (const std::exception& e) {
    // run_host_call words a refusal "NAME cannot run OP: REASON".
    const std::string what = e.what();
    const std::string marker = " cannot run " + std::string(op_name(test.op)) + ": ";
    if (size_t at = what.find(marker); at != std::string::npos)
      r.not_offered = what.substr(at + marker.size());
    else
      r.error = what;
    r.pass = false;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<Tensor> calibrate_noise(TestCase& test, Backend& plain_f32) {
  HostCallResult got = run_host_call(plain_f32, test.op, test.attrs, test.inputs, test.site.str());
  test.noise.clear();
  for (size_t i = 0; i < got.outputs.size(); ++i)
    test.noise.push_back(measure(test.outputs[i], got.outputs[i], 0).error);
  return std::move(got.outputs);
}

TestCase synthesize(const TestCase& carved, uint64_t seed, Backend& source, Backend& plain_f32) {
  TestCase t = carved;
  t.kept_because = "synthetic";
  t.input_weights.resize(t.inputs.size());
  std::mt19937_64 rng(seed ^ (uint64_t(carved.id) * 0x9E3779B97F4A7C15ull));
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (size_t i = 0; i < t.inputs.size(); ++i) {
    const Tensor& src = carved.inputs[i];
    if (src.dtype() == DType::I32) {
      // Token ids index the table (input 0 of embedding); positions keep their real values,
      // which the op's contract constrains (cache rows, causal offsets).
      if (carved.op == Op::Embedding && i == 1) {
        Tensor ids(DType::I32, src.shape());
        std::uniform_int_distribution<int32_t> id(0, int32_t(carved.inputs[0].shape()[0]) - 1);
        for (int64_t j = 0; j < ids.numel(); ++j) ids.mutable_data<int32_t>()[j] = id(rng);
        t.inputs[i] = ids;
      }
      continue;
    }
    if (value_constrained(carved.op, i)) continue;
    if (is_block(src.dtype())) {  // quantized from the same draws
      std::vector<float> v(size_t(src.numel()));
      for (float& y : v) y = uniform(rng);
      t.inputs[i] = Tensor::from_f32_as(src.dtype(), src.shape(), v);
      t.input_weights[i].clear();
      continue;
    }
    Tensor x(src.dtype(), src.shape());
    for (int64_t j = 0; j < x.numel(); ++j) {
      float v = uniform(rng);
      switch (x.dtype()) {
        case DType::F32:
          x.mutable_data<float>()[j] = v;
          break;
        case DType::F16:
          x.mutable_data<uint16_t>()[j] = f32_to_f16(v);
          break;
        case DType::BF16:
          x.mutable_data<uint16_t>()[j] = f32_to_bf16(v);
          break;
        default:
          break;
      }
    }
    t.inputs[i] = x;
    t.input_weights[i].clear();
  }
  t.outputs = run_host_call(source, t.op, t.attrs, t.inputs, t.site.str()).outputs;
  calibrate_noise(t, plain_f32);
  return t;
}

}  // namespace tapml

namespace tapml {

namespace {

void replay_stress(Backend& target, const TestCase& carved,
                   const std::vector<StressVariant>& variants, Backend& source, Backend& plain_f32,
                   const TolerancePolicy& policy, std::vector<StressResult>& out) {
  const ValueRange carved_range = stressed_range(carved);
  for (const StressVariant& v : variants) {
    std::optional<StressCase> c = make_stress_case(carved, v, source, plain_f32);
    if (!c) continue;
    StressResult s;
    s.variant = v.name();
    s.range = c->range;
    s.carved_range = carved_range;
    s.skipped = c->skipped;
    if (s.skipped.empty()) {
      s.result = replay_test(target, c->test, policy);
    } else {
      s.result.id = carved.id;
      s.result.op = carved.op;
      s.result.site = carved.site.str();
      s.result.phase = carved.phase.str();
    }
    out.push_back(std::move(s));
  }
}

}  // namespace

ReplayRun replay_corpus(const std::string& corpus_path, const std::string& target_uri,
                        const ReplayOptions& o) {
  TAPML_REQUIRE(
      o.shards >= 1 && o.shard >= 1 && o.shard <= o.shards,
      "shard " + std::to_string(o.shard) + "/" + std::to_string(o.shards) + " is out of range");
  Corpus corpus = Corpus::open(corpus_path);
  // A corpus that is incomplete or empty would "pass" without testing what it should.
  if (!o.allow_partial) {
    TAPML_REQUIRE(corpus.finished(),
                  corpus_path +
                      ": its carve did not finish (it was stopped or failed), "
                      "so it lacks tests; --allow-partial replays what it holds");
    TAPML_REQUIRE(!corpus.list().empty(),
                  corpus_path + ": holds no tests; --allow-partial replays it anyway");
  }
  DevicePool own;
  DevicePool& pool = o.pool ? *o.pool : own;
  Backend& target = pool.open(target_uri);
  if (o.synthetic && !o.stress.empty())
    throw UsageError(
        "stress variants derive from the carved inputs, synthetic tests replace them: give "
        "--stress or --synthetic, not both");
  const bool recompute = o.synthetic || !o.stress.empty();
  Backend* source = recompute ? &pool.open("ref") : nullptr;
  Backend* plain_f32 = recompute ? &pool.open(kNoiseReference) : nullptr;
  std::vector<TestInfo> tests = corpus.list(o.op_regex, o.site_regex);
  if (tests.empty() && (!o.op_regex.empty() || !o.site_regex.empty())) {
    // A filter that selects nothing would "pass" a corpus it never ran: name what is there.
    std::vector<TestInfo> all = corpus.list();
    std::set<std::string> ops, layers;
    for (const TestInfo& t : all) ops.insert(t.op);
    std::string op_names;
    for (const std::string& op : ops) op_names += (op_names.empty() ? "" : ", ") + op;
    throw UsageError(
        corpus_path + ": no test matches" +
        (o.op_regex.empty() ? "" : " --op '" + o.op_regex + "'") +
        (o.site_regex.empty() ? "" : " --site '" + o.site_regex + "'") + " (the " +
        std::to_string(all.size()) + " tests are of ops " +
        (op_names.empty() ? "(none)" : op_names) +
        (all.empty() ? "" : "; sites like " + all.front().site + ", " + all.back().site) + ")");
  }
  if (!o.ids.empty()) {
    std::vector<TestInfo> chosen;
    for (int64_t id : o.ids) {
      auto it =
          std::find_if(tests.begin(), tests.end(), [&](const TestInfo& t) { return t.id == id; });
      TAPML_REQUIRE(it != tests.end(),
                    corpus_path + ": no test " + std::to_string(id) + " (matching the filters)");
      chosen.push_back(*it);
    }
    tests = chosen;
  }
  std::vector<TestInfo> mine;
  for (size_t i = 0; i < tests.size(); ++i)
    if (int(i % size_t(o.shards)) == o.shard - 1) mine.push_back(tests[i]);

  ReplayRun run{corpus_path, target_uri, o.synthetic, o.shard, o.shards, {}, {}, {}};
  for (const StressVariant& v : o.stress) run.stress_variants.push_back(v.name());
  TolerancePolicy policy;
  for (size_t i = 0; i < mine.size(); ++i) {
    TestCase t = corpus.load(mine[i].id);
    const bool twin = is_twin(t.kept_because);
    if (o.synthetic) t = synthesize(t, o.seed, *source, *plain_f32);
    run.results.push_back(replay_test(target, t, policy));
    run.results.back().twin = twin;
    if (!o.stress.empty())
      replay_stress(target, t, o.stress, *source, *plain_f32, policy, run.stress);
    if (o.on_result) o.on_result(i + 1, mine.size(), run.results.back());
    if (run.results.back().failed() && o.fail_fast) break;
  }
  return run;
}

}  // namespace tapml

// Stress variants of a stories260K corpus carved on ref: what they keep and what they push,
// that correct backends pass every one, and that textbook exp kernels (the naive_exp test
// backend, and the faulty backend's exp_overflow) pass the carved tests and fail the
// variants past exp's overflow, reported as robustness apart from the verdict.
#include "replay/stress.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "backends/builtin.h"
#include "carve/corpus.h"
#include "core/error.h"
#include "replay/replay.h"
#include "report/test_report.h"
#include "support/naive_exp_backend.h"
#include "support/stories.h"

namespace tapml {
namespace {

// Where an f32 exp leaves the normal numbers: it overflows past ln(FLT_MAX) ~ 88.72 and
// its results lose digits as subnormals below ln(FLT_MIN) ~ -87.34.
constexpr double kF32ExpOverflow = 88.72, kF32ExpSubnormal = -87.33;

const std::string& stories_corpus() { return testing::stories_corpus(16); }

struct Sources {
  std::unique_ptr<Backend> ref = open_backend("ref"), plain = open_backend(kNoiseReference);
};

ReplayRun stress_run(const std::string& backend,
                     std::vector<StressVariant> variants = default_stress_variants()) {
  ReplayOptions o;
  o.stress = std::move(variants);
  return replay_corpus(stories_corpus(), backend, o);
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() &&
         std::equal(a.bytes(), a.bytes() + a.nbytes(), b.bytes());
}

std::string describe(const StressResult& s) {
  return "#" + std::to_string(s.result.id) + " " + s.result.site + " (" +
         std::string(op_name(s.result.op)) + ") " + s.variant + ": " + s.skipped + s.result.error +
         s.result.verdict.detail;
}

TEST(StressVariant, NamesRoundTrip) {
  for (const char* name : {"x10", "x0.5", "near-equal-x10", "prefix-4096"})
    EXPECT_EQ(StressVariant::parse(name).name(), name);
  EXPECT_EQ(StressVariant::parse("40").name(), "x40");
  std::vector<std::string> names;
  for (const StressVariant& v : default_stress_variants()) names.push_back(v.name());
  EXPECT_EQ(names, (std::vector<std::string>{"x10", "x40", "x100", "x1000", "near-equal-x10",
                                             "prefix-4096"}));
  // Repeats collapse.
  EXPECT_EQ(parse_stress_variants("x40,40,prefix-100").size(), 2u);
}

TEST(StressVariant, NamesThatAreNotVariantsAreUsageErrors) {
  for (const char* bad : {"", "x0", "x-3", "xinf", "near-equal", "prefix-1.5", "prefix-0", "huge"})
    EXPECT_THROW(StressVariant::parse(bad), UsageError) << bad;
  EXPECT_THROW(parse_stress_variants("x10,,x40"), UsageError);
}

TEST(Stress, ScaledVariantsKeepStructureAndPushTheStressedQuantity) {
  Corpus c = Corpus::open(stories_corpus());
  Sources s;
  std::set<Op> pushed;
  for (const TestInfo& info : c.list()) {
    const TestCase carved = c.load(info.id);
    std::optional<StressCase> v =
        make_stress_case(carved, StressVariant::parse("x40"), *s.ref, *s.plain);
    if (carved.op == Op::Embedding) {  // a weight and token ids: nothing to push
      EXPECT_FALSE(v);
      continue;
    }
    ASSERT_TRUE(v) << info.site;
    ASSERT_TRUE(v->skipped.empty()) << info.site << ": " << v->skipped;
    EXPECT_EQ(v->test.signature(), carved.signature()) << info.site;
    for (size_t i = 0; i < carved.inputs.size(); ++i) {
      const bool structure =
          carved.inputs[i].dtype() == DType::I32 || !carved.input_weights.at(i).empty();
      const bool zeros = stressed_range(carved).magnitude() == 0 ||
                         (!structure && carved.inputs[i].to_f32() ==
                                            std::vector<float>(size_t(carved.inputs[i].numel())));
      if (structure || !zeros)  // an empty cache stays empty
        EXPECT_EQ(same_bytes(v->test.inputs[i], carved.inputs[i]), structure)
            << info.site << " input " << i;
    }
    // Scores and gates grow by the level, like every other op's activations.
    const ValueRange before = stressed_range(carved);
    EXPECT_NEAR(v->range.low, 40 * before.low, 1e-4 * 40 * before.magnitude()) << info.site;
    EXPECT_NEAR(v->range.high, 40 * before.high, 1e-4 * 40 * before.magnitude()) << info.site;
    // The expected outputs are the source's on the new inputs, with a noise floor of their own.
    ASSERT_EQ(v->test.noise.size(), v->test.outputs.size());
    for (double n : v->test.noise) EXPECT_GE(n, 0) << info.site;
    pushed.insert(carved.op);
  }
  for (Op op : {Op::RmsNorm, Op::Matmul, Op::Rope, Op::KvStore, Op::Attention, Op::Swiglu, Op::Add})
    EXPECT_TRUE(pushed.count(op)) << op_name(op);
}

TEST(Stress, NearEqualRowsAndLongPrefixes) {
  Corpus c = Corpus::open(stories_corpus());
  Sources s;
  const TestCase norm = c.load(c.list("rmsnorm").at(0).id);
  std::optional<StressCase> flat =
      make_stress_case(norm, StressVariant::parse("near-equal-x10"), *s.ref, *s.plain);
  ASSERT_TRUE(flat && flat->skipped.empty());
  const Tensor& x = flat->test.inputs[0];
  const int64_t n = x.shape()[1];
  const std::vector<float> v = x.to_f32(), orig = norm.inputs[0].to_f32();
  for (int64_t r = 0; r < x.shape()[0]; ++r) {
    float lo = INFINITY, hi = -INFINITY, big = 0;
    for (int64_t i = 0; i < n; ++i) {
      lo = std::min(lo, v[size_t(r * n + i)]);
      hi = std::max(hi, v[size_t(r * n + i)]);
      big = std::max(big, std::fabs(orig[size_t(r * n + i)]));
    }
    // Every value within three digits of its row's offset, ten times the row's largest.
    EXPECT_NEAR(std::fabs(lo), 10 * big, 10 * big * 3e-3) << "row " << r;
    EXPECT_LE(hi - lo, 10 * big * 2 * 2e-3) << "row " << r;
  }

  const TestCase attn = c.load(c.list("attention").at(0).id);
  const int64_t p = attn.inputs[1].shape()[0];
  std::optional<StressCase> longer =
      make_stress_case(attn, StressVariant::parse("prefix-4096"), *s.ref, *s.plain);
  ASSERT_TRUE(longer && longer->skipped.empty());
  for (size_t i : {1, 2}) {
    const Tensor& kv = longer->test.inputs[i];
    ASSERT_EQ(kv.shape()[0], 4096);
    // The carved keys and values last, where the queries' own positions are.
    EXPECT_TRUE(same_bytes(kv.slice_rows(4096 - p, 4096).clone(), attn.inputs[i]));
  }
  EXPECT_TRUE(same_bytes(longer->test.inputs[0], attn.inputs[0]));
  // Other ops have no prefix, and a prefix no longer than the carved one adds nothing.
  EXPECT_FALSE(make_stress_case(norm, StressVariant::parse("prefix-4096"), *s.ref, *s.plain));
  EXPECT_FALSE(make_stress_case(attn, StressVariant::parse("prefix-" + std::to_string(p)), *s.ref,
                                *s.plain));
}

TEST(Stress, VariantsTheSourceCannotHoldAreSkippedNotJudged) {
  Sources s;
  TestCase t;
  t.id = 1;
  t.op = Op::Matmul;
  t.inputs = {Tensor::from_f32({1, 4}, std::vector<float>(4, 1e37f)),
              Tensor::from_f32({2, 4}, std::vector<float>(8, 1.0f))};
  t.input_weights = {"", "w"};
  t.outputs = {Tensor::from_f32({1, 2}, std::vector<float>(2, 4e37f))};
  // 4e38 is past FLT_MAX: the source's own output is Inf.
  std::optional<StressCase> v = make_stress_case(t, StressVariant::parse("x10"), *s.ref, *s.plain);
  ASSERT_TRUE(v);
  EXPECT_NE(v->skipped.find("the source's own output 0 overflows"), std::string::npos)
      << v->skipped;
  // 1e41 is not an f32 at all.
  v = make_stress_case(t, StressVariant::parse("x10000"), *s.ref, *s.plain);
  ASSERT_TRUE(v);
  EXPECT_NE(v->skipped.find("inputs overflow"), std::string::npos) << v->skipped;
  // Within range it is judged.
  v = make_stress_case(t, StressVariant::parse("x2"), *s.ref, *s.plain);
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->skipped.empty()) << v->skipped;
}

// Every variant that applies, on a correct backend: none fails.
void expect_clean(const ReplayRun& run) {
  for (const TestResult& r : run.results) EXPECT_TRUE(r.pass) << r.site << ": " << r.verdict.detail;
  std::map<std::string, int> judged;
  for (const StressResult& s : run.stress) {
    EXPECT_FALSE(s.failed()) << run.backend << " " << describe(s);
    judged[s.variant] += s.skipped.empty();
  }
  for (const std::string& v : run.stress_variants)
    EXPECT_GT(judged[v], 0) << v << " judged nothing on " << run.backend;
}

TEST(Stress, CorrectHostBackendsPassEveryVariant) {
  for (const char* uri : {"cpu", kNoiseReference}) expect_clean(stress_run(uri));
}

TEST(Stress, CorrectDeviceBackendsPassEveryVariant) {
  int ran = 0;
  std::string why;
  for (const char* uri : {"vulkan", "opencl"}) {
    try {
      open_backend(uri);
    } catch (const std::exception& e) {
      why += std::string(uri) + ": " + e.what() + "; ";
      continue;
    }
    expect_clean(stress_run(uri));
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << "no Vulkan or OpenCL device: " << why;
}

int total_failed(const std::map<std::pair<Op, std::string>, int>& failed) {
  int n = 0;
  for (const auto& [key, count] : failed) n += count;
  return n;
}

TEST(Stress, TextbookExpKernelsPassEveryCarvedTestAndFailPastExpOverflow) {
  testing::register_naive_exp_backend();
  ReplayRun run = stress_run("naive_exp");
  for (const TestResult& r : run.results)
    EXPECT_TRUE(r.pass) << "carved " << r.site << ": " << r.error << r.verdict.detail;
  std::map<std::pair<Op, std::string>, int> failed;
  auto failures = [&](Op op, const std::string& variant) { return failed[{op, variant}]; };
  int nan_or_inf = 0;
  for (const StressResult& s : run.stress) {
    if (!s.failed()) continue;
    failed[{s.result.op, s.variant}]++;
    // Only the ops with a textbook exp, and only where exp leaves the normal f32 range.
    EXPECT_TRUE(s.result.op == Op::Attention || s.result.op == Op::Swiglu) << describe(s);
    EXPECT_TRUE(s.range.high > kF32ExpOverflow || s.range.low < kF32ExpSubnormal) << describe(s);
    nan_or_inf +=
        s.result.verdict.failed == CheckKind::NaN || s.result.verdict.failed == CheckKind::Inf;
  }
  // Mostly as the model would see it: NaN, not a small error (the rest are rows whose scores
  // all lie below -87.3, where the weights are subnormal and lose digits).
  EXPECT_GT(nan_or_inf, 0.9 * total_failed(failed));
  // stories260K's gates (about 5.2) stay below 88.7 at 10x and pass beyond it at 40x; its
  // scores (about 22) pass it at 10x.
  EXPECT_EQ(failures(Op::Swiglu, "x10"), 0);
  for (const char* v : {"x40", "x100", "x1000"}) EXPECT_GT(failures(Op::Swiglu, v), 0) << v;
  for (const char* v : {"x10", "x40", "x100", "x1000", "near-equal-x10"})
    EXPECT_GT(failures(Op::Attention, v), 0) << v;
}

TEST(Stress, FaultyExpOverflowFailsAsRobustness) {
  ReplayRun run = stress_run("faulty:cpu?fault=exp_overflow");
  std::map<Op, int> failed;
  for (const StressResult& s : run.stress) {
    if (!s.failed()) continue;
    failed[s.result.op]++;
    EXPECT_TRUE(s.result.op == Op::Attention || s.result.op == Op::Swiglu) << describe(s);
  }
  EXPECT_GT(failed[Op::Attention], 0);
  EXPECT_GT(failed[Op::Swiglu], 0);
  // Its exp is held in f16: gates of 52 (x10) are past 11.09 already.
  bool swiglu_x10 = false;
  for (const StressResult& s : run.stress)
    swiglu_x10 |= s.result.op == Op::Swiglu && s.variant == "x10" && s.failed();
  EXPECT_TRUE(swiglu_x10);
}

TEST(Stress, ReportsKeepRobustnessApartFromTheVerdict) {
  testing::register_naive_exp_backend();
  ReplayRun run = stress_run("naive_exp", parse_stress_variants("x10,x40"));
  const nlohmann::json j = to_json(run);
  EXPECT_EQ(j["version"], 2);
  EXPECT_EQ(j["summary"]["failed"], 0);
  EXPECT_GT(j["robustness"]["summary"]["failed"].get<int>(), 0);
  EXPECT_EQ(j["robustness"]["variants"], nlohmann::json({"x10", "x40"}));
  EXPECT_EQ(j["robustness"]["summary"]["per_op"]["swiglu"]["variants"]["x10"]["failed"], 0);
  EXPECT_GT(j["robustness"]["summary"]["per_op"]["swiglu"]["variants"]["x40"]["failed"].get<int>(),
            0);

  // Read back and merged from shards, the section is the same.
  ReplayRun back = replay_run_from_json(j, "report");
  ASSERT_EQ(back.stress.size(), run.stress.size());
  ReplayRun a = back, b = back;
  a.results.clear();
  a.stress.clear();
  b.results.clear();
  b.stress.clear();
  for (const TestResult& r : back.results) (r.id % 2 ? a : b).results.push_back(r);
  for (const StressResult& s : back.stress) (s.result.id % 2 ? a : b).stress.push_back(s);
  EXPECT_EQ(to_json(merge_runs({a, b}))["robustness"], to_json(back)["robustness"]);

  const std::string text = robustness_text(run, 0);
  EXPECT_NE(text.find("swiglu (gate): holds its own range ["), std::string::npos) << text;
  EXPECT_NE(text.find(", x10 ["), std::string::npos) << text;
  EXPECT_NE(text.find("; fails x40"), std::string::npos) << text;
  EXPECT_NE(text.find("ROBUSTNESS FAIL #"), std::string::npos) << text;
  EXPECT_NE(text.find("--stress 'x40'"), std::string::npos) << text;
  EXPECT_EQ(summary_text(run).find("robustness"), std::string::npos);

  JunitOptions lenient;
  const std::string xml = junit_xml(run, lenient);
  EXPECT_NE(xml.find("robustness.swiglu"), std::string::npos);
  EXPECT_EQ(xml.find("<failure"), std::string::npos);
  EXPECT_NE(xml.find("robustness failure, not part of the verdict"), std::string::npos);
  JunitOptions strict;
  strict.stress_strict = true;
  EXPECT_NE(junit_xml(run, strict).find("<failure"), std::string::npos);
}

}  // namespace
}  // namespace tapml

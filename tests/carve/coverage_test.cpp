// Corpus coverage on stories260K: a carve from a 3-token prompt is told that it never fills a
// 4-row matmul block, a longer prompt fills it, and carve --cover fills every class the model
// can reach, with twins that catch a planted tail bug the carved tests cannot.
#include "carve/coverage.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "backends/builtin.h"
#include "carve/carve_run.h"
#include "carve/cover.h"
#include "model/model_file.h"
#include "replay/replay.h"
#include "report/test_report.h"
#include "support/errors.h"
#include "support/shared.h"
#include "support/stories.h"

namespace tapml {
namespace {

using testing::contains;

// stories260K as llama2.c wrote it: the GGUF's weights with the context of 512 positions the
// model was trained for (the GGUF declares 128).
const ModelFile& stories_512() {
  static ModelFile m = load_model(testing::shared_path("models/stories260K/stories260K.bin"));
  return m;
}

// stories260K carved on ref (noise calibrated, as tapml carve does) from the first `tokens`
// ids of a real prompt, BOS first.
std::string carve_stories(const std::string& name, size_t tokens, int steps, bool cover,
                          CarveResult* result = nullptr,
                          const ModelFile& model = testing::stories()) {
  std::vector<int> prompt = testing::stories_tokenizer().encode(
      "Once upon a time, there was a little girl named Lily.", true);
  EXPECT_GE(prompt.size(), tokens);
  prompt.resize(tokens);
  std::string path = testing::temp_dir() + "/" + name;
  DevicePool pool;
  Backend& plain = pool.open(kNoiseReference);
  CarveOptions o;
  o.steps = steps;
  o.cover = cover;
  o.pool = &pool;
  o.before_store = [&](TestCase& t) { calibrate_noise(t, plain); };
  CarveResult r = carve_to_file(model, {prompt}, {"prompt"}, o, path, false);
  if (result) *result = r;
  return path;
}

Coverage coverage_of(const std::string& path) {
  return measure_coverage(Corpus::open(path).outlines());
}
int context_of(const std::string& path) {
  return corpus_context(Corpus::open(path).summary().meta);
}

// The gap about `cls` of `op`, or null.
const CoverageGap* gap_of(const std::vector<CoverageGap>& gaps, Op op, const std::string& cls) {
  for (const CoverageGap& g : gaps)
    if (std::count(g.ops.begin(), g.ops.end(), op))
      for (const ShapeClass* c : g.classes)
        if (c->name == cls) return &g;
  return nullptr;
}

const ClassTally& tally(const Coverage& c, Op op, const std::string& cls) {
  for (const OpCoverage& oc : c.ops)
    if (oc.op == op)
      for (const GroupTally& gt : oc.groups)
        for (const ClassTally& ct : gt.classes)
          if (ct.cls->name == cls) return ct;
  throw std::runtime_error(std::string(op_name(op)) + " has no class " + cls);
}

TEST(Coverage, AThreeTokenPromptIsWarnedThatItNeverFillsAMatmulRowBlock) {
  std::string path = carve_stories("three.corpus", 3, 12, false);
  Coverage c = coverage_of(path);
  EXPECT_EQ(tally(c, Op::Matmul, "T>=4").tests, 0);
  EXPECT_GT(tally(c, Op::Matmul, "T>=2").tests, 0);  // the prompt's 3 rows
  EXPECT_GT(tally(c, Op::Matmul, "T=1").tests, 0);   // decode
  ASSERT_EQ(context_of(path), 128);                  // as the GGUF declares
  std::vector<CoverageGap> gaps = coverage_gaps(c, 128);
  const CoverageGap* g = gap_of(gaps, Op::Matmul, "T>=4");
  ASSERT_NE(g, nullptr) << gaps_text(gaps);
  EXPECT_TRUE(g->warning);
  EXPECT_TRUE(contains(g->text, "4-row block")) << g->text;
  EXPECT_TRUE(contains(g->text, "T seen: 1, 3")) << g->text;
  EXPECT_TRUE(contains(gaps_text(gaps), "warning: matmul: no test with T>=4")) << gaps_text(gaps);
  // A carve this short also misses a prefill after cached rows and decode past 32 keys.
  EXPECT_NE(gap_of(gaps, Op::Attention, "P>T>1"), nullptr);
  EXPECT_NE(gap_of(gaps, Op::Attention, "P>32"), nullptr);
  // Decode past 256 keys lies beyond the context: a note, and a warning when the context is
  // not known.
  const CoverageGap* p = gap_of(gaps, Op::Attention, "P>256");
  ASSERT_NE(p, nullptr);
  EXPECT_FALSE(p->warning);
  EXPECT_TRUE(contains(p->text, "more than the model's context of 128")) << p->text;
  EXPECT_TRUE(gap_of(coverage_gaps(c), Op::Attention, "P>256")->warning);
  // stories260K has 8 heads on 4 KV heads: grouped-query attention is covered.
  EXPECT_GT(tally(c, Op::Attention, "H/KV>1").tests, 0);
  EXPECT_EQ(gap_of(gaps, Op::Attention, "H/KV>1"), nullptr);
  // Its widths (64, 172, ...) are multiples of 4: a note, not a warning, for the K tail.
  const CoverageGap* k = gap_of(gaps, Op::Matmul, "K%4!=0");
  ASSERT_NE(k, nullptr);
  EXPECT_FALSE(k->warning);
  EXPECT_TRUE(contains(k->text, "K seen: 64, 172")) << k->text;
  EXPECT_TRUE(contains(coverage_table(c), "T>=4 -")) << coverage_table(c);
}

TEST(Coverage, ALongerPromptFillsTheRowBlocks) {
  Coverage c = coverage_of(carve_stories("six.corpus", 6, 12, false));
  EXPECT_GT(tally(c, Op::Matmul, "T>=4").tests, 0);
  EXPECT_GT(tally(c, Op::Matmul, "T>4,T%4!=0").tests, 0);
  std::vector<CoverageGap> gaps = coverage_gaps(c, 128);
  EXPECT_EQ(gap_of(gaps, Op::Matmul, "T>=4"), nullptr) << gaps_text(gaps);
  EXPECT_EQ(gap_of(gaps, Op::Matmul, "T>4,T%4!=0"), nullptr) << gaps_text(gaps);
  EXPECT_FALSE(contains(gaps_text(gaps), "4-row block")) << gaps_text(gaps);
  // Six rows are not a 64-row tile: that warning stays.
  EXPECT_NE(gap_of(gaps, Op::Matmul, "T>64"), nullptr);
}

// One carve with --cover, shared by the tests below.
const std::string& covered_corpus(CarveResult* result = nullptr) {
  static CarveResult r;
  static std::string path = carve_stories("cover.corpus", 3, 12, true, &r, stories_512());
  if (result) *result = r;
  return path;
}

TEST(Coverage, CoverFillsEveryClassTheModelCanReach) {
  CarveResult r;
  Coverage c = coverage_of(covered_corpus(&r));
  ASSERT_EQ(context_of(covered_corpus()), 512);
  std::vector<CoverageGap> gaps = coverage_gaps(c, 512);
  EXPECT_TRUE(gaps.empty()) << gaps_text(gaps);
  // One run reached decode past 256 keys: a prefill of at least 253, 3 more, 1 decode step.
  EXPECT_GE(r.cover.plan.prefill, 253);
  EXPECT_TRUE(r.cover.plan.unreachable.empty());
  EXPECT_GT(r.cover.run_tests, 0);
  EXPECT_GT(tally(c, Op::Attention, "P>256").tests, 0);
  EXPECT_GT(tally(c, Op::Attention, "P>T>1").tests, 0);
  EXPECT_EQ(tally(c, Op::Attention, "P>256").twins, 0);  // real calls, not twins
  // The tails come from twins only, each narrowed below a multiple of 4.
  const ClassTally& k = tally(c, Op::Matmul, "K%4!=0");
  EXPECT_GT(k.tests, 0);
  EXPECT_EQ(k.tests, k.twins);
  Corpus corpus = Corpus::open(covered_corpus());
  int64_t twins = 0;
  for (const TestOutline& t : corpus.outlines()) {
    if (!is_twin(t.kept_because)) continue;
    ++twins;
    EXPECT_TRUE(contains(t.kept_because, " of test ")) << t.kept_because;
  }
  EXPECT_EQ(twins, r.cover.twins);
  EXPECT_GT(twins, 0);
}

TEST(Coverage, TwinsPassOnCorrectBackendsAndCatchATailBugTheCarvedTestsMiss) {
  const std::string& covered = covered_corpus();
  for (const char* backend : {"ref", "cpu"}) {
    ReplayRun run = replay_corpus(covered, backend, {});
    int64_t twins = 0;
    for (const TestResult& r : run.results) {
      EXPECT_TRUE(r.pass) << backend << " #" << r.id << " " << r.site << ": " << r.error
                          << r.verdict.detail;
      twins += r.twin;
    }
    EXPECT_GT(twins, 0) << "replays report twins apart";
    EXPECT_TRUE(
        contains(summary_text(run), std::to_string(twins) + " of the tests are synthetic twins"));
    ReplayRun back = replay_run_from_json(to_json(run), "report");
    for (size_t i = 0; i < run.results.size(); ++i)
      EXPECT_EQ(back.results[i].twin, run.results[i].twin);
  }
  // matmul_tail drops the last K % 8 products. At these sites K is 64, which has no tail:
  // the carved tests pass, the twins narrowed to K = 63 fail.
  const std::string faulty = "faulty:cpu?fault=matmul_tail&site=attn_|ffn_gate|ffn_up|^output$";
  ReplayOptions matmuls;
  matmuls.op_regex = "^matmul$";
  ReplayRun plain = replay_corpus(
      carve_stories("plain.corpus", 3, 12, false, nullptr, stories_512()), faulty, matmuls);
  for (const TestResult& r : plain.results)
    EXPECT_TRUE(r.pass) << r.site << " " << r.verdict.detail;
  ReplayRun run = replay_corpus(covered, faulty, matmuls);
  int64_t failed = 0;
  for (const TestResult& r : run.results) {
    if (!r.failed()) continue;
    ++failed;
    EXPECT_TRUE(r.twin) << "a carved test failed at " << r.site;
  }
  EXPECT_GT(failed, 0);
}

TEST(Coverage, OutlinesAreTheTestsWithoutTheirValues) {
  Corpus corpus = Corpus::open(covered_corpus());
  std::vector<TestOutline> outlines = corpus.outlines();
  ASSERT_EQ(outlines.size(), corpus.list().size());
  for (const TestOutline& o : outlines) {
    TestOutline full = outline(corpus.load(o.id));
    EXPECT_EQ(o.op, full.op);
    EXPECT_EQ(o.attrs, full.attrs);
    EXPECT_EQ(o.site, full.site);
    EXPECT_EQ(o.phase, full.phase);
    EXPECT_EQ(o.prompt_index, full.prompt_index);
    EXPECT_EQ(o.inputs, full.inputs) << o.id;
    EXPECT_EQ(o.outputs, full.outputs) << o.id;
    EXPECT_EQ(o.kept_because, full.kept_because);
  }
}

TestOutline attention(int heads, int kv_heads, int64_t rows, int64_t keys) {
  TestOutline t;
  t.op = Op::Attention;
  t.attrs = {{"n_heads", heads}, {"n_kv_heads", kv_heads}, {"head_dim", 16}, {"scale", 0.25}};
  t.phase = rows > 1 ? Phase::prefill() : Phase::decode(1);
  t.inputs = {{DType::F32, Shape{rows, heads * 16}},
              {DType::F32, Shape{keys, kv_heads * 16}},
              {DType::F32, Shape{keys, kv_heads * 16}}};
  t.outputs = {t.inputs[0]};
  return t;
}

TEST(Coverage, AModelWithoutGroupedQueryAttentionGetsANoteThatNothingCanFillIt) {
  std::vector<TestOutline> mha = {attention(4, 4, 5, 5), attention(4, 4, 1, 300)};
  std::vector<CoverageGap> gaps = coverage_gaps(measure_coverage(mha));
  const CoverageGap* g = gap_of(gaps, Op::Attention, "H/KV>1");
  ASSERT_NE(g, nullptr) << gaps_text(gaps);
  EXPECT_FALSE(g->warning);
  EXPECT_TRUE(contains(g->text, "as many KV heads as query heads")) << g->text;
  EXPECT_TRUE(contains(g->text, "nor does --cover")) << g->text;
  EXPECT_TRUE(contains(gaps_text(gaps), "note: attention: no test with H/KV>1"));
  // A cover run cannot make it either: the plan is not for it.
  CoverRunPlan plan = plan_cover_run(measure_coverage(mha), 4096);
  for (const std::string& f : plan.fills) EXPECT_FALSE(contains(f, "H/KV")) << f;

  std::vector<TestOutline> gqa = {attention(8, 2, 5, 5), attention(8, 2, 1, 300)};
  gaps = coverage_gaps(measure_coverage(gqa));
  EXPECT_EQ(gap_of(gaps, Op::Attention, "H/KV>1"), nullptr) << gaps_text(gaps);
  // Neither set has a prefill after cached rows; the plan fills it with its second chunk.
  EXPECT_NE(gap_of(gaps, Op::Attention, "P>T>1"), nullptr);
  plan = plan_cover_run(measure_coverage(gqa), 4096);
  EXPECT_TRUE(std::count(plan.fills.begin(), plan.fills.end(), "attention P>T>1"));
  // Past the model's context nothing is planned; within it, what the run's own length does
  // not fit is named.
  plan = plan_cover_run(measure_coverage(gqa), 40);
  EXPECT_FALSE(std::count(plan.fills.begin(), plan.fills.end(), "attention P>256"));
  EXPECT_FALSE(std::count(plan.unreachable.begin(), plan.unreachable.end(), "attention P>256"));
  EXPECT_LE(plan.positions(), 40);
}

TEST(Coverage, ACoverRunThatDoesNotFitNamesWhatItCannotReach) {
  TestOutline decode_row;
  decode_row.op = Op::Matmul;
  decode_row.phase = Phase::decode(1);
  decode_row.inputs = {{DType::F32, Shape{1, 64}}, {DType::F32, Shape{32, 64}}};
  decode_row.outputs = {{DType::F32, Shape{1, 32}}};
  Coverage c = measure_coverage(std::vector<TestOutline>{decode_row});
  // 8 positions: a prefill of 4, 3 more rows and a decode step. A partial 4-row block needs a
  // prefill of 5.
  CoverRunPlan plan = plan_cover_run(c, 8);
  EXPECT_EQ(plan.prefill, 4);
  EXPECT_EQ(plan.positions(), 8);
  EXPECT_TRUE(std::count(plan.fills.begin(), plan.fills.end(), "matmul T>=4"));
  EXPECT_TRUE(std::count(plan.fills.begin(), plan.fills.end(), "matmul prefill"));
  EXPECT_TRUE(std::count(plan.unreachable.begin(), plan.unreachable.end(), "matmul T>4,T%4!=0"));
  EXPECT_FALSE(std::count(plan.unreachable.begin(), plan.unreachable.end(), "matmul T>64"));
  plan = plan_cover_run(c, 2048);
  EXPECT_EQ(plan.prefill, 65);  // more than a 64-row tile, and no multiple of 4
  EXPECT_TRUE(plan.unreachable.empty());
}

TEST(Coverage, ATwinKeepsTheRealValuesOfItsKeptPart) {
  Corpus corpus = Corpus::open(covered_corpus());
  const ClassGroup* k_tail = nullptr;
  for (const ClassGroup& g : shape_class_groups())
    if (g.op == Op::Matmul && g.title == "K tail") k_tail = &g;
  ASSERT_NE(k_tail, nullptr);
  std::vector<TestInfo> matmuls = corpus.list("^matmul$");
  ASSERT_FALSE(matmuls.empty());
  TestCase carved = corpus.load(matmuls.front().id);
  const int64_t T = carved.inputs[0].shape()[0], K = carved.inputs[0].shape()[1];
  const int64_t N = carved.inputs[1].shape()[0];
  auto ref = open_backend("ref");
  TestCase twin = narrowed_twin(carved, *k_tail, K - 1, *ref);
  EXPECT_EQ(twin.inputs[0].shape(), (Shape{T, K - 1}));
  EXPECT_EQ(twin.inputs[1].shape(), (Shape{N, K - 1}));
  EXPECT_EQ(twin.outputs[0].shape(), (Shape{T, N}));
  for (int64_t r = 0; r < N; ++r)
    EXPECT_EQ(0, std::memcmp(twin.inputs[1].data<float>() + r * (K - 1),
                             carved.inputs[1].data<float>() + r * K, size_t(K - 1) * 4));
  EXPECT_EQ(twin.input_weights[1], "") << "a narrowed weight is no longer the model's";
  EXPECT_TRUE(is_twin(twin.kept_because)) << twin.kept_because;
  EXPECT_EQ(twin.kept_because, "twin: K " + std::to_string(K) + " -> " + std::to_string(K - 1) +
                                   " of test " + std::to_string(carved.id));
  // Quantized rows are whole blocks: they cannot be narrowed.
  TestCase q = carved;
  std::vector<float> w(size_t(N * K), 0.5f);
  q.inputs[1] = Tensor::from_f32_as(DType::Q8_0, Shape{N, K}, w);
  EXPECT_TRUE(
      contains(testing::error_of([&] { narrowed_twin(q, *k_tail, K - 1, *ref); }), "whole blocks"));
}

}  // namespace
}  // namespace tapml

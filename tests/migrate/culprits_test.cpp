// Every culprit in one auto run, grouped by cause, and latent failures: a fault in a reader
// of f16 weights shared by embedding and matmul is named in both, as one cause; two
// independent faults in different kinds are both named, as two; RoPE one position late fails
// every rope call without changing the output, so the migration passes and lists every rope
// site as latent; a correct target has no latent site.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "backend/registry.h"
#include "backends/builtin.h"
#include "migrate/migrate.h"
#include "model/model_file.h"
#include "support/shared.h"
#include "support/tiny_model.h"
#include "tokenizer/load.h"

namespace tapml {
namespace {

const ModelFile& stories() {
  static ModelFile m = load_model(testing::shared_path("models/stories260K/stories260K.gguf"));
  return m;
}

MigrateReport migrate_stories(const std::string& target, int steps = 24) {
  static Tokenizer tok = load_tokenizer("", stories().gguf.get(), stories().config.vocab_size);
  MigrateOptions o;
  o.target = target;
  o.steps = steps;
  o.prompts = {tok.encode("Once upon a time", true)};
  o.stop_tokens = {tok.vocab().eos};
  return migrate(stories(), o);
}

MigrateReport migrate_tiny(DType weights, const std::string& target,
                           const std::string& strategy = "auto") {
  MigrateOptions o;
  o.target = target;
  o.strategy = strategy;
  o.steps = 12;
  o.prompts = {{1, 7, 30, 2, 11}};
  return migrate(testing::make_tiny_llama(5, weights), o);
}

std::vector<std::string> sites_of(const std::vector<Culprit>& named, Op op) {
  std::vector<std::string> out;
  for (const Culprit& c : named)
    if (c.op == op) out.push_back(c.site);
  return out;
}

std::vector<std::string> model_sites(const MigrateReport& r, Op op) {
  std::vector<std::string> out;
  for (const SiteAttribution& a : r.sites)
    if (a.info.op == op) out.push_back(a.info.site.str());
  return out;
}

TEST(Culprits, AnF16ReaderFaultNamesEmbeddingAndMatmulAsOneCause) {
  MigrateReport r = migrate_tiny(DType::F16, "faulty:cpu?fault=f16_reader");
  ASSERT_EQ(r.status, "fail") << r.summary;
  // Both kinds, every one of their sites: the walk went on past the failing embedding.
  EXPECT_EQ(sites_of(r.culprits, Op::Embedding), std::vector<std::string>{"token_embd"});
  EXPECT_EQ(sites_of(r.culprits, Op::Matmul), model_sites(r, Op::Matmul)) << r.summary;
  EXPECT_EQ(r.culprit_ops, (std::vector<Op>{Op::Embedding, Op::Matmul}));
  ASSERT_EQ(r.groups.size(), 1u) << r.summary;
  const CauseGroup& g = r.groups[0];
  EXPECT_EQ(g.cause, "weight_dtype");
  EXPECT_EQ(g.dtype, DType::F16);
  EXPECT_EQ(g.label, "f16 weights (embedding, matmul)");
  EXPECT_EQ(g.sites.size(), r.culprits.size());
  for (const Culprit& c : r.culprits) EXPECT_EQ(c.group, 0) << c.site;
  EXPECT_NE(r.summary.find("f16 weights break the output in embedding at token_embd"),
            std::string::npos)
      << r.summary;
  // The matmul step ran with the embedding kept on the source, and failed on its own.
  auto matmul_step = std::find_if(r.timeline.begin(), r.timeline.end(), [](const MigrationStep& s) {
    return s.label == "kinds: matmul";
  });
  ASSERT_NE(matmul_step, r.timeline.end());
  EXPECT_FALSE(matmul_step->pass);
  EXPECT_EQ(matmul_step->kept_on_source, std::vector<std::string>{"kinds: embedding"});
  EXPECT_EQ(r.bisections.size(), 2u);
  EXPECT_TRUE(r.untested.empty());
  EXPECT_TRUE(r.latent.empty()) << r.latent.front().site;
}

TEST(Culprits, KindsStopsAtTheFirstFailingKindAndSaysWhatItDidNotRun) {
  MigrateReport r = migrate_tiny(DType::F16, "faulty:cpu?fault=f16_reader", "kinds");
  ASSERT_EQ(r.status, "fail");
  EXPECT_EQ(r.timeline.back().label, "kinds: embedding");
  EXPECT_EQ(r.culprit_ops, std::vector<Op>{Op::Embedding});
  EXPECT_NE(std::find(r.untested.begin(), r.untested.end(), "kinds: matmul"), r.untested.end());
  EXPECT_NE(r.summary.find("not run end to end: "), std::string::npos) << r.summary;
  // The matmul sites fail in isolation all the same, and are named (latent, not run).
  EXPECT_EQ(sites_of(r.latent, Op::Matmul), model_sites(r, Op::Matmul));
  for (const Culprit& c : r.latent)
    EXPECT_NE(c.evidence.find("not run end to end"), std::string::npos) << c.evidence;
}

TEST(Culprits, F16WeightsOnACorrectTargetAndF32OnTheF16ReaderPass) {
  for (const auto& [weights, target] : std::vector<std::pair<DType, std::string>>{
           {DType::F16, "cpu"}, {DType::F32, "faulty:cpu?fault=f16_reader"}}) {
    MigrateReport r = migrate_tiny(weights, target);
    EXPECT_EQ(r.status, "pass") << target << ": " << r.summary;
    EXPECT_TRUE(r.culprits.empty()) << target;
    EXPECT_TRUE(r.latent.empty()) << target;
  }
}

// A target with two unrelated bugs: a faulty backend (silu_approx at one site) wrapped in
// another (matmul_tail at one site).
TEST(Culprits, TwoIndependentFaultsAreBothNamedAsTwoCauses) {
  register_backend("silu_broken", "test", [](const BackendUri&) {
    return open_backend("faulty:cpu?fault=silu_approx&site=^blk\\.3\\.ffn_act$");
  });
  MigrateReport r =
      migrate_stories("faulty:silu_broken?fault=matmul_tail&site=^blk\\.1\\.ffn_down$");
  ASSERT_EQ(r.status, "fail") << r.summary;
  ASSERT_EQ(r.culprits.size(), 2u) << r.summary;
  EXPECT_EQ(sites_of(r.culprits, Op::Matmul), std::vector<std::string>{"blk.1.ffn_down"});
  EXPECT_EQ(sites_of(r.culprits, Op::Swiglu), std::vector<std::string>{"blk.3.ffn_act"});
  // f32 weights are no shared cause, and swiglu reads none: two groups of one op each.
  ASSERT_EQ(r.groups.size(), 2u);
  for (const CauseGroup& g : r.groups) EXPECT_EQ(g.cause, "op") << g.label;
  EXPECT_TRUE(r.latent.empty());
}

TEST(Culprits, RopeOnePositionLatePassesWithEveryRopeSiteLatent) {
  MigrateReport r = migrate_stories("faulty:cpu?fault=rope_position");
  EXPECT_EQ(r.status, "pass") << r.summary;
  EXPECT_TRUE(r.culprits.empty());
  const std::vector<std::string> rope = model_sites(r, Op::Rope);
  ASSERT_EQ(rope.size(), 10u);  // q and k of stories260K's five layers
  EXPECT_EQ(sites_of(r.latent, Op::Rope), rope);
  EXPECT_EQ(r.latent.size(), rope.size()) << r.summary;
  for (const SiteAttribution& a : r.sites) {
    if (a.info.op == Op::Rope) {
      EXPECT_EQ(a.failed, a.calls) << a.info.site;  // every call
    }
  }
  for (const Culprit& c : r.latent)
    EXPECT_NE(c.evidence.find("the output passes with it on the target (step 3 'kinds: rope'"),
              std::string::npos)
        << c.evidence;
  ASSERT_EQ(r.latent_groups.size(), 1u);
  EXPECT_EQ(r.latent_groups[0].label, "rope");
  EXPECT_NE(r.summary.find("but 10 sites fail in isolation without breaking the output (latent): "
                           "rope at 10 sites (every rope site fails in isolation)"),
            std::string::npos)
      << r.summary;
}

TEST(Culprits, ACorrectTargetHasNoLatentSite) {
  MigrateReport r = migrate_stories("cpu");
  EXPECT_EQ(r.status, "pass") << r.summary;
  EXPECT_TRUE(r.latent.empty()) << r.latent.front().site << ": " << r.latent.front().evidence;
  EXPECT_TRUE(r.latent_groups.empty());
  EXPECT_EQ(r.summary.find("latent"), std::string::npos) << r.summary;
}

// The grouping rule alone, on made-up attributions.
SiteAttribution failing(const std::string& name, Op op, std::vector<DType> weights,
                        bool without_weight = false) {
  SiteAttribution a;
  a.info.site = Site::parse(name);
  a.info.op = op;
  a.calls = 4;
  a.failed = 4;
  a.failed_weight_dtypes = std::move(weights);
  a.failed_without_weight = without_weight;
  return a;
}

TEST(Culprits, GroupingJoinsOpsThatShareOneNonF32WeightTypeOnly) {
  std::vector<SiteAttribution> sites = {
      failing("token_embd", Op::Embedding, {DType::Q4_0}),
      failing("blk.0.attn_q", Op::Matmul, {DType::Q4_0}),
      failing("blk.0.ffn_down", Op::Matmul, {DType::Q4_0}),
      failing("blk.0.ffn_act", Op::Swiglu, {}, true),
      failing("blk.0.attn_q_bias", Op::Bias, {DType::F32}),
      failing("blk.0.attn_output", Op::Matmul, {DType::F32}),
  };
  auto named = [&](std::vector<size_t> which) {
    std::vector<Culprit> out;
    for (size_t i : which) out.push_back({sites[i].info.site.str(), sites[i].info.op, "", -1});
    return out;
  };
  // embedding and matmul reading q4_0: one cause; swiglu (no weight) its own.
  std::vector<Culprit> c = named({0, 1, 3, 2});
  std::vector<CauseGroup> g = group_by_cause(c, sites);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].label, "q4_0 weights (embedding, matmul)");
  EXPECT_EQ(g[0].sites, (std::vector<std::string>{"token_embd", "blk.0.attn_q", "blk.0.ffn_down"}));
  EXPECT_EQ(g[1].label, "swiglu");
  EXPECT_EQ(c[2].group, 1);
  EXPECT_EQ(c[3].group, 0);
  // A matmul culprit that reads f32 makes matmul's type mixed: no shared cause any more.
  c = named({0, 1, 5});
  g = group_by_cause(c, sites);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].label, "embedding");
  EXPECT_EQ(g[1].label, "matmul");
  // Two ops sharing f32 weights are not one cause: f32 needs no decoding.
  c = named({4, 5});
  g = group_by_cause(c, sites);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].cause, "op");
  // One op alone reading q4_0 is a group of that op.
  c = named({1, 2});
  g = group_by_cause(c, sites);
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].label, "matmul");
  EXPECT_EQ(g[0].cause, "op");
}

}  // namespace
}  // namespace tapml

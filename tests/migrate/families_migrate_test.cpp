// Migration on the families: each passes to a correct target with every site moved, and the
// faults of the ops the families brought, each injected at one site of a family that uses the
// op, are pinned to exactly that site by the auto strategy.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "migrate/migrate.h"
#include "model/model_file.h"
#include "support/shared.h"

namespace tapml {
namespace {

struct Case {
  std::string fault, family, site;
  Op op;
};

std::string escaped(const std::string& site) {
  std::string re = "^";
  for (char c : site) re += c == '.' ? std::string("\\.") : std::string(1, c);
  return re + "$";
}

TEST(FamiliesMigrate, EachNewFaultIsPinnedToItsSite) {
  const std::vector<Case> cases = {
      {"gelu_form", "gemma", "blk.1.ffn_act", Op::Gelu},
      {"layernorm_mean", "phi", "blk.1.attn_norm", Op::LayerNorm},
      {"bias_dropped", "qwen2", "blk.0.attn_k_bias", Op::Bias},
      {"rope_full_head", "stablelm", "blk.1.rope_q", Op::Rope},
      {"window_off_by_one", "mistral", "blk.1.attn", Op::Attention},
      {"softcap_missing", "gemma2", "blk.0.attn", Op::Attention},
      {"softcap_missing", "gemma2", "output_softcap", Op::Softcap},
      {"router_axis", "mixtral", "blk.0.ffn_route", Op::MoeRoute},
      {"moe_norm", "qwen2_moe", "blk.1.ffn_route", Op::MoeRoute},
  };
  for (const Case& c : cases) {
    std::string dir = testing::shared_path("models/families/" + c.family);
    ModelFile model = load_model(dir);
    std::ifstream in(dir + "/golden.json");
    MigrateOptions o;
    o.target = "faulty:cpu?fault=" + c.fault + "&site=" + escaped(c.site);
    o.steps = 32;
    o.prompts = {nlohmann::json::parse(in)["prompt_ids"].get<std::vector<int>>()};
    MigrateReport r = migrate(model, o);
    EXPECT_EQ(r.status, "fail") << c.fault;
    ASSERT_EQ(r.culprits.size(), 1u) << c.fault << ": " << r.summary;
    EXPECT_EQ(r.culprits[0].site, c.site) << c.fault << ": " << r.summary;
    EXPECT_EQ(r.culprit_ops, std::vector<Op>{c.op}) << c.fault;
  }
}

TEST(FamiliesMigrate, EveryFamilyMigratesToACorrectTarget) {
  std::error_code ec;
  int families = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(testing::shared_path("models/families"), ec)) {
    if (!std::filesystem::exists(e.path() / "golden.json")) continue;
    ++families;
    std::ifstream in(e.path() / "golden.json");
    MigrateOptions o;
    o.target = "cpu";
    o.steps = 24;
    o.prompts = {nlohmann::json::parse(in)["prompt_ids"].get<std::vector<int>>()};
    MigrateReport r = migrate(load_model(e.path().string()), o);
    EXPECT_EQ(r.status, "pass") << e.path() << ": " << r.summary;
    EXPECT_EQ(r.timeline.back().target_sites.size(), r.sites.size()) << e.path();
  }
  EXPECT_GE(families, 20);
}

TEST(FamiliesMigrate, AFaultWhereItsOptionIsAbsentChangesNothing) {
  // rope_full_head on a head rotated whole, window_off_by_one without windows, softcap_missing
  // without caps: the target is correct and the migration passes.
  for (const auto& [fault, family] :
       std::vector<std::pair<std::string, std::string>>{{"rope_full_head", "llama"},
                                                        {"window_off_by_one", "llama"},
                                                        {"softcap_missing", "qwen3"}}) {
    std::string dir = testing::shared_path("models/families/" + family);
    std::ifstream in(dir + "/golden.json");
    MigrateOptions o;
    o.target = "faulty:cpu?fault=" + fault;
    o.steps = 24;
    o.prompts = {nlohmann::json::parse(in)["prompt_ids"].get<std::vector<int>>()};
    MigrateReport r = migrate(load_model(dir), o);
    EXPECT_EQ(r.status, "pass") << fault << ": " << r.summary;
  }
}

}  // namespace
}  // namespace tapml

#include "report/migrate_report.h"

#include <gtest/gtest.h>

#include <regex>

#include "core/version.h"

namespace tapml {
namespace {

MigrateReport small_report() {
  MigrateReport r;
  r.model = "m.gguf";
  r.target = "cpu";
  r.source = "ref";
  return r;
}

TEST(MigrateReport, ContextRecordsHowTheReportWasMade) {
  ReportContext c;
  c.command = "tapml migrate --model m.gguf --backend cpu";
  c.date = "2025-12-01T14:20:11Z";
  c.version = "0.1";
  c.corpus = "s.corpus";
  c.corpus_backend = "faulty:cpu?fault=rope_pairing";
  c.failing_tests = {5, 41};
  nlohmann::json j = to_json(small_report(), c);
  EXPECT_EQ(j["version"], kMigrateReportVersion);
  EXPECT_EQ(j["context"]["command"], c.command);
  EXPECT_EQ(j["context"]["date"], c.date);
  EXPECT_EQ(j["context"]["tapml_version"], "0.1");
  EXPECT_EQ(j["context"]["corpus"]["path"], "s.corpus");
  EXPECT_EQ(j["context"]["corpus"]["backend"], "faulty:cpu?fault=rope_pairing");
  EXPECT_EQ(j["context"]["corpus"]["failing_tests"], nlohmann::json::array({5, 41}));
}

TEST(MigrateReport, ContextIsOptional) {
  EXPECT_FALSE(to_json(small_report()).contains("context"));
  // Without a corpus, no corpus object.
  nlohmann::json j =
      to_json(small_report(), report_context({"tapml", "migrate", "--prompt", "a b"}));
  EXPECT_FALSE(j["context"].contains("corpus"));
  EXPECT_EQ(j["context"]["command"], "tapml migrate --prompt 'a b'");
  EXPECT_EQ(j["context"]["tapml_version"], kTapmlVersion);
  EXPECT_TRUE(std::regex_match(j["context"]["date"].get<std::string>(),
                               std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)")))
      << j["context"].dump();
}

// A migration that found two culprits of one cause and a latent site.
MigrateReport grouped_report() {
  MigrateReport r = small_report();
  r.status = "fail";
  r.summary = "f16 weights break the output in embedding and matmul";
  r.culprits = {{"token_embd", Op::Embedding, "isolated: fails 3 of 3 calls", 0},
                {"blk.0.attn_q", Op::Matmul, "isolated: fails 3 of 3 calls", 0}};
  r.culprit_ops = {Op::Embedding, Op::Matmul};
  r.groups = {{"f16 weights (embedding, matmul)",
               "weight_dtype",
               DType::F16,
               {Op::Embedding, Op::Matmul},
               {"token_embd", "blk.0.attn_q"}}};
  r.latent = {{"blk.0.rope_q", Op::Rope, "isolated: fails 3 of 3 calls; the output passes", 0}};
  r.latent_groups = {{"rope", "op", DType::F32, {Op::Rope}, {"blk.0.rope_q"}}};
  r.bisections = {{"kinds: embedding", 1, 0, {"token_embd"}},
                  {"kinds: matmul", 7, 4, {"blk.0.attn_q"}}};
  MigrationStep step;
  step.label = "kinds: matmul";
  step.kept_on_source = {"kinds: embedding"};
  r.timeline = {step};
  return r;
}

TEST(MigrateReport, VerdictGroupsCulpritsAndListsLatentSites) {
  nlohmann::json j = to_json(grouped_report());
  EXPECT_EQ(j["version"], 2);
  const nlohmann::json& v = j["verdict"];
  ASSERT_EQ(v["groups"].size(), 1u);
  EXPECT_EQ(v["groups"][0]["label"], "f16 weights (embedding, matmul)");
  EXPECT_EQ(v["groups"][0]["cause"], "weight_dtype");
  EXPECT_EQ(v["groups"][0]["dtype"], "f16");
  EXPECT_EQ(v["groups"][0]["ops"], nlohmann::json::array({"embedding", "matmul"}));
  EXPECT_EQ(v["culprits"][1]["group"], 0);
  ASSERT_EQ(v["latent"].size(), 1u);
  EXPECT_EQ(v["latent"][0]["site"], "blk.0.rope_q");
  EXPECT_EQ(v["latent_groups"][0]["label"], "rope");
  EXPECT_FALSE(v["latent_groups"][0].contains("dtype"));  // an op group has none
  EXPECT_EQ(v["untested"], nlohmann::json::array());
  EXPECT_EQ(j["timeline"][0]["kept_on_source"], nlohmann::json::array({"kinds: embedding"}));
  EXPECT_EQ(j["bisect"]["searches"].size(), 2u);
  EXPECT_EQ(j["bisect"]["searches"][1]["label"], "kinds: matmul");

  std::string text = migrate_text(grouped_report());
  EXPECT_NE(text.find("  cause f16 weights (embedding, matmul), 2 sites:\n"
                      "    culprit token_embd (embedding): isolated: fails 3 of 3 calls\n"
                      "    culprit blk.0.attn_q (matmul): "),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("  latent rope, 1 site (fail in isolation, not culprits):\n"
                      "    latent blk.0.rope_q (rope): "),
            std::string::npos)
      << text;
}

TEST(MigrateReport, TextSaysWhichGroupsWereNotRun) {
  MigrateReport r = grouped_report();
  r.untested = {"kinds: swiglu", "kinds: add"};
  EXPECT_NE(migrate_text(r).find("  not run end to end: kinds: swiglu; kinds: add\n"),
            std::string::npos)
      << migrate_text(r);
  r.untested.clear();
  EXPECT_EQ(migrate_text(r).find("not run end to end"), std::string::npos);
}

}  // namespace
}  // namespace tapml

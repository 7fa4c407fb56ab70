#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "support/shared.h"

namespace tapml {
namespace {

using testing::run_command;
using testing::shared_path;
using testing::shell_quote;

std::string tapml(const std::string& args) { return testing::tapml_command(args); }
std::string model() { return shell_quote(shared_path("models/stories260K/stories260K.gguf")); }

TEST(MigrateCli, CorrectTargetPasses) {
  auto r = run_command(tapml("migrate --model " + model() + " --backend cpu --steps 24 --quiet"));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("PASS"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("latent"), std::string::npos) << r.out;
}

TEST(MigrateCli, FaultIsPinnedInTextJsonAndHtml) {
  std::string dir = testing::temp_dir();
  auto r = run_command(
      tapml("migrate --model " + model() +
            " --backend 'faulty:cpu?fault=silu_approx&site=blk\\.3\\.ffn_act' --steps 24 "
            "--prompt 'Once upon a time' --json " +
            shell_quote(dir + "/m.json") + " --html " + shell_quote(dir + "/m.html")));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("culprit blk.3.ffn_act (swiglu)"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("step 0 kinds: embedding"), std::string::npos)
      << "progress lines: " << r.err;
  std::ifstream f(dir + "/m.json");
  nlohmann::json j = nlohmann::json::parse(f);
  EXPECT_EQ(j["format"], "tapml-migrate-report");
  EXPECT_EQ(j["verdict"]["status"], "fail");
  EXPECT_EQ(j["verdict"]["culprits"][0]["site"], "blk.3.ffn_act");
  EXPECT_EQ(j["verdict"]["culprit_ops"][0], "swiglu");
  EXPECT_GT(std::filesystem::file_size(dir + "/m.html"), 10000u);
}

// With --kv-cache f16 every run keeps an f16 cache: a fault in attention is pinned there as
// with f32, the report says which cache ran, and its rerun command repeats the flag.
TEST(MigrateCli, AnF16KvCacheRunsEveryRunWithIt) {
  std::string dir = testing::temp_dir();
  auto r = run_command(tapml("migrate --model " + model() +
                             " --backend 'faulty:cpu?fault=gqa_map' --steps 24 --kv-cache f16 "
                             "--prompt 'Once upon a time' --json " +
                             shell_quote(dir + "/m16.json") + " --html " +
                             shell_quote(dir + "/m16.html")));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  std::ifstream f(dir + "/m16.json");
  nlohmann::json j = nlohmann::json::parse(f);
  EXPECT_EQ(j["kv_cache"], "f16");
  EXPECT_EQ(j["verdict"]["culprit_ops"], nlohmann::json::array({"attention"}));
  std::ifstream h(dir + "/m16.html");
  const std::string html((std::istreambuf_iterator<char>(h)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("--kv-cache f16"), std::string::npos);
  auto ok = run_command(
      tapml("migrate --model " + model() + " --backend cpu --steps 24 --kv-cache f16 --quiet"));
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("PASS"), std::string::npos) << ok.out;
}

TEST(MigrateCli, DemoPinsItsInjectedFaultAndSaysWhereTheReportIs) {
  std::string dir = testing::temp_dir() + "/demo";
  auto r = run_command("TAPML_SHARED=" + shell_quote(shared_path("")) + " " +
                       tapml("demo --steps 24 --out " + shell_quote(dir)));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("culprit blk.2.rope_q (rope)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HTML report: "), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir + "/migrate.html"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/stories.corpus"));
}

// One auto run names both kinds that a broken f16 reader breaks, as one cause: the walk goes
// on past the failing embedding with it kept on the source.
TEST(MigrateCli, AnF16ReaderFaultIsOneCauseInEmbeddingAndMatmul) {
  std::string dir = testing::temp_dir();
  std::string f16 = shell_quote(dir + "/llama-f16.gguf");
  auto made =
      run_command(tapml("convert --model " + shell_quote(shared_path("models/families/llama")) +
                        " --out " + f16 + " --dtype f16 -q"));
  ASSERT_EQ(made.exit_code, 0) << made.err;
  auto r = run_command(tapml("migrate --model " + f16 +
                             " --backend 'faulty:cpu?fault=f16_reader' --prompt-ids 1,17,300,42 "
                             "--steps 12 --json " +
                             shell_quote(dir + "/m.json")));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("  cause f16 weights (embedding, matmul), "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("    culprit token_embd (embedding): isolated: fails"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("    culprit blk.1.ffn_down (matmul): isolated: fails"), std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find(" sites on the target, kinds: embedding kept on the source): FAIL"),
            std::string::npos)
      << r.err;
  std::ifstream f(dir + "/m.json");
  nlohmann::json j = nlohmann::json::parse(f);
  EXPECT_EQ(j["version"], 2);
  EXPECT_EQ(j["verdict"]["culprit_ops"], nlohmann::json::array({"embedding", "matmul"}));
  ASSERT_EQ(j["verdict"]["groups"].size(), 1u) << j["verdict"].dump(1);
  EXPECT_EQ(j["verdict"]["groups"][0]["label"], "f16 weights (embedding, matmul)");
  EXPECT_EQ(j["verdict"]["groups"][0]["dtype"], "f16");
  EXPECT_EQ(j["verdict"]["latent"].size(), 0u);
}

// RoPE one position late on q and k: the output passes, and every rope site is latent in the
// text, the JSON and the HTML; --fail-on-latent turns that into exit status 1.
TEST(MigrateCli, RopeOnePositionLateIsAPassWithLatentSites) {
  std::string dir = testing::temp_dir();
  const std::string run = "migrate --model " + model() +
                          " --backend 'faulty:cpu?fault=rope_position' --steps 16 --quiet";
  auto r = run_command(tapml(run + " --json " + shell_quote(dir + "/m.json") + " --html " +
                             shell_quote(dir + "/m.html")));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("PASS: the output is unchanged with every supported site on "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("  latent rope, 10 sites (fail in isolation, not culprits):\n"
                       "    latent blk.0.rope_q (rope): isolated: fails "),
            std::string::npos)
      << r.out;
  std::ifstream f(dir + "/m.json");
  nlohmann::json j = nlohmann::json::parse(f);
  EXPECT_EQ(j["verdict"]["status"], "pass");
  EXPECT_EQ(j["verdict"]["culprits"].size(), 0u);
  EXPECT_EQ(j["verdict"]["latent"].size(), 10u);
  for (const nlohmann::json& site : j["sites"]) {
    if (site["op"] == "rope") {
      EXPECT_EQ(site["local"]["failed"], site["local"]["calls"]) << site;
    }
  }
  std::ifstream h(dir + "/m.html");
  std::string html((std::istreambuf_iterator<char>(h)), std::istreambuf_iterator<char>());
  EXPECT_NE(html.find("id=\"latent\""), std::string::npos);
  EXPECT_NE(html.find("but 10 sites fail in isolation"), std::string::npos);

  auto strict = run_command(tapml(run + " --fail-on-latent"));
  EXPECT_EQ(strict.exit_code, 1) << strict.out << strict.err;
  EXPECT_NE(strict.out.find("exit status 1: 10 latent sites and --fail-on-latent"),
            std::string::npos)
      << strict.out;
}

TEST(MigrateCli, BadArguments) {
  auto r = run_command(tapml("migrate --model " + model() + " --backend cpu --strategy random"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--strategy"), std::string::npos) << r.err;
  r = run_command(tapml("migrate --model " + model() + " --backend nosuch"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("unknown backend"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
}

}  // namespace
}  // namespace tapml

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
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

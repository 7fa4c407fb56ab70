// tapml compare end to end on stories260K: exit status, the culprit's site line, the JSON
// report, and one-line errors.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/shared.h"

namespace tapml {
namespace {

using testing::run_command;
using testing::shell_quote;

std::string compare_cmd(const std::string& backend, const std::string& extra = "") {
  return testing::tapml_command(
      "compare --model " +
      shell_quote(testing::shared_path("models/stories260K/stories260K.gguf")) + " --backend " +
      shell_quote(backend) + " --steps 16 " + extra);
}

// The printed line of one site ("FAIL blk.2.rope_q ..."), or "" when absent.
std::string site_line(const std::string& out, const std::string& site) {
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string mark, name;
    words >> mark >> name;
    if (name == site && (mark == "ok" || mark == "FAIL")) return line;
  }
  return "";
}

int count_lines_starting(const std::string& out, const std::string& prefix) {
  std::istringstream in(out);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.rfind(prefix, 0) == 0;
  return n;
}

TEST(CompareCli, CorrectTargetExitsZero) {
  auto r = run_command(compare_cmd("cpu"));
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(count_lines_starting(r.out, "FAIL"), 0) << r.out;
  EXPECT_NE(site_line(r.out, "blk.2.rope_q").rfind("ok", 0), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("83 sites compared, 0 failed, 0 not comparable"), std::string::npos)
      << r.out;
}

TEST(CompareCli, FaultFailsOnlyTheCulpritAndWritesJson) {
  std::string json = testing::temp_dir() + "/compare.json";
  auto r = run_command(compare_cmd("faulty:cpu?fault=rope_pairing&site=blk\\.2\\.rope_q",
                                   "--prompt 'Once upon a time' --json " + shell_quote(json)));
  EXPECT_EQ(r.exit_code, 1) << r.err << r.out;
  std::string line = site_line(r.out, "blk.2.rope_q");
  EXPECT_EQ(line.rfind("FAIL", 0), 0u) << r.out;
  EXPECT_NE(line.find("rope"), std::string::npos) << line;
  EXPECT_NE(line.find("numeric"), std::string::npos) << line;
  EXPECT_EQ(count_lines_starting(r.out, "FAIL"), 1) << r.out;
  EXPECT_NE(r.out.find("83 sites compared, 1 failed, 0 not comparable"), std::string::npos)
      << r.out;

  std::ifstream f(json);
  ASSERT_TRUE(bool(f)) << "no JSON report";
  nlohmann::json j = nlohmann::json::parse(f);
  EXPECT_EQ(j["format"], "tapml-compare-report");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["source"], "ref");
  EXPECT_EQ(j["target"], "faulty:cpu?fault=rope_pairing&site=blk\\.2\\.rope_q");
  EXPECT_EQ(j["steps"], 16);
  EXPECT_EQ(j["prompts"], nlohmann::json::array({"Once upon a time"}));
  ASSERT_EQ(j["sites"].size(), 83u);
  int failed = 0;
  for (const auto& s : j["sites"]) {
    for (const char* key :
         {"site", "op", "layer", "calls", "failed", "unsupported", "worst_ratio", "worst_error",
          "worst_check", "worst_detail", "worst_phase", "unsupported_reason"})
      EXPECT_TRUE(s.contains(key)) << key;
    if (s["failed"].get<int>() == 0) continue;
    failed++;
    EXPECT_EQ(s["site"], "blk.2.rope_q");
    EXPECT_EQ(s["op"], "rope");
    EXPECT_EQ(s["layer"], 2);
    EXPECT_EQ(s["worst_check"], "numeric");
    EXPECT_GT(s["worst_ratio"].get<double>(), 1);
    EXPECT_FALSE(s["worst_detail"].get<std::string>().empty());
  }
  EXPECT_EQ(failed, 1);
  EXPECT_EQ(j["summary"]["sites_failed"], 1);
  EXPECT_EQ(j["summary"]["pass"], false);
}

TEST(CompareCli, KvOffsetFailsTheKvStoreSitesWithNullRatio) {
  std::string json = testing::temp_dir() + "/kv.json";
  auto r = run_command(compare_cmd("faulty:cpu?fault=kv_offset", "--json " + shell_quote(json)));
  EXPECT_EQ(r.exit_code, 1) << r.err << r.out;
  EXPECT_EQ(count_lines_starting(r.out, "FAIL"), 5) << r.out;
  EXPECT_EQ(site_line(r.out, "blk.0.kv_store").rfind("FAIL", 0), 0u) << r.out;
  std::ifstream f(json);
  nlohmann::json j = nlohmann::json::parse(f);
  for (const auto& s : j["sites"]) {
    if (s["site"] != "blk.0.kv_store") continue;
    EXPECT_TRUE(s["worst_ratio"].is_null()) << s;
  }
}

TEST(CompareCli, SiteFilterLimitsTheComparison) {
  auto r = run_command(compare_cmd("faulty:cpu?fault=matmul_tail", "--site 'attn_q$'"));
  EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("5 sites compared, 0 failed"), std::string::npos) << r.out;
}

TEST(CompareCli, BadBackendIsAOneLineError) {
  auto r = run_command(compare_cmd("nosuch:0"));
  EXPECT_EQ(r.exit_code, 2);  // a usage error
  EXPECT_EQ(r.err.rfind("tapml: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;

  r = run_command(testing::tapml_command("compare --backend cpu"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--model"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tapml

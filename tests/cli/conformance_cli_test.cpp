// tapml test --conformance end to end: a correct backend passes with the table printed and
// exit status 0; a faulty one exits 1 naming the broken op; the JSON and JUnit reports are
// written; --conformance with a corpus is a usage error that says so.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "report/xml_parse.h"
#include "support/shared.h"

namespace tapml {
namespace {

using testing::run_command;
using testing::shell_quote;

std::string tapml(const std::string& args) { return testing::tapml_command(args); }

TEST(ConformanceCli, CorrectBackendPassesWithTheTable) {
  auto r = run_command(tapml("test --conformance --backend cpu"));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // The op column is as wide as the longest name, sigmoid_gate.
  for (const char* line :
       {"conformance of cpu", "worst/tol", "embedding    table=f16 ids=i32",
        "matmul       x=f32 w=bf16", "sigmoid_gate x=f32 g=f32", "attention",
        "matmul       x=f32 w=q4_k", "embedding    table=q6_k ids=i32", " 0 failed, 0 not offered"})
    EXPECT_NE(r.out.find(line), std::string::npos) << line << "\n" << r.out;
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
}

TEST(ConformanceCli, FaultFailsNamingTheOpWithReports) {
  std::string dir = testing::temp_dir();
  auto r =
      run_command(tapml("test --conformance --backend " +
                        shell_quote("faulty:cpu?fault=matmul_tail") + " --seed 3 --json " +
                        shell_quote(dir + "/c.json") + " --junit " + shell_quote(dir + "/c.xml")));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("FAIL matmul [x=f32 w=f16]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("failed (matmul)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rerun: tapml test --conformance --backend "
                       "'faulty:cpu?fault=matmul_tail' --op '^matmul$' --seed 3"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("FAIL rmsnorm"), std::string::npos) << r.out;

  std::ifstream jf(dir + "/c.json");
  ASSERT_TRUE(bool(jf));
  nlohmann::json j = nlohmann::json::parse(jf);
  EXPECT_EQ(j["format"], "tapml-conformance-report");
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["backend"], "faulty:cpu?fault=matmul_tail");
  EXPECT_EQ(j["seed"], 3);
  EXPECT_EQ(j["summary"]["failed_ops"], nlohmann::json::array({"matmul"}));
  EXPECT_GT(j["summary"]["failed"].get<int>(), 0);

  std::ifstream xf(dir + "/c.xml");
  std::stringstream xml;
  xml << xf.rdbuf();
  EXPECT_NE(xml.str().find("<testsuite name=\"matmul\""), std::string::npos);
  EXPECT_NE(xml.str().find("<failure type=\"numeric\""), std::string::npos) << xml.str();
  // The file a CI server reads: well-formed, with the totals and, in each failure's body, the
  // command that reruns the failing op with the same cases.
  nlohmann::json doc = testing::parse_xml_strictly(xml.str());
  EXPECT_EQ(doc["attrib"].value("failures", ""), std::to_string(j["summary"]["failed"].get<int>()));
  EXPECT_EQ(doc["attrib"].value("tests", ""), std::to_string(j["summary"]["cases"].get<int>()));
  bool rerun_in_body = false;
  for (const auto& suite : testing::children(doc, "testsuite"))
    for (const auto& tc : testing::children(suite, "testcase"))
      for (const auto& f : testing::children(tc, "failure"))
        rerun_in_body |=
            f["text"].get<std::string>().find(
                "rerun: tapml test --conformance --backend "
                "'faulty:cpu?fault=matmul_tail' --op '^matmul$' --seed 3") != std::string::npos;
  EXPECT_TRUE(rerun_in_body) << xml.str();

  // The rerun line runs just that op, with the same cases.
  r = run_command(tapml("test --conformance --backend " +
                        shell_quote("faulty:cpu?fault=matmul_tail") + " --op '^matmul$' --seed 3"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out.find("rmsnorm"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("failed (matmul)"), std::string::npos) << r.out;
}

TEST(ConformanceCli, UsageErrors) {
  auto r = run_command(tapml("test --conformance --corpus x.corpus --backend cpu"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--corpus does not apply"), std::string::npos) << r.err;
  r = run_command(tapml("test --conformance"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--conformance needs --backend"), std::string::npos) << r.err;
  r = run_command(tapml("test --conformance --backend cpu --op nosuchop"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("matches no op"), std::string::npos) << r.err;
  r = run_command(tapml("test --conformance --backend nosuch"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("nosuch"), std::string::npos) << r.err;
  r = run_command(tapml("test --help"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--conformance"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("not offered"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace tapml

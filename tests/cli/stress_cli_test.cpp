// `tapml test --stress` as a user meets it: robustness after the verdict in text, JSON and
// JUnit, an exit status the carved verdict drives unless --stress-strict, and the command a
// robustness failure prints reproduces it. The backend that passes every carved test and
// fails past exp's overflow is the naive_exp test backend, served in-process over TCP.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/naive_exp_backend.h"
#include "support/running_server.h"
#include "support/shared.h"
#include "support/stories.h"

namespace tapml {
namespace {

using testing::run_command;
using testing::shell_quote;

std::string tapml(const std::string& args) { return testing::tapml_command(args); }
std::string q(const std::string& s) { return shell_quote(s); }

const std::string& corpus() { return testing::stories_corpus(16); }

std::string read_file(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(StressCli, ACorrectBackendIsCleanAndTheSectionFollowsTheVerdict) {
  const std::string dir = testing::temp_dir();
  auto r = run_command(tapml("test -q --corpus " + q(corpus()) + " --backend cpu --stress --json " +
                             q(dir + "/c.json") + " --junit " + q(dir + "/c.xml")));
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const size_t verdict = r.out.find(" passed, 0 failed"), section = r.out.find("robustness:");
  ASSERT_NE(verdict, std::string::npos) << r.out;
  ASSERT_NE(section, std::string::npos) << r.out;
  EXPECT_LT(verdict, section);
  EXPECT_NE(r.out.find("attention (score): holds its own range ["), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(", prefix-4096 ["), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("fails"), std::string::npos) << r.out;
  auto j = nlohmann::json::parse(read_file(dir + "/c.json"));
  EXPECT_EQ(j["robustness"]["summary"]["failed"], 0);
  EXPECT_GT(j["robustness"]["tests"].size(), j["tests"].size());
  EXPECT_NE(read_file(dir + "/c.xml").find("robustness.attention"), std::string::npos);
}

TEST(StressCli, RobustnessFailuresLeaveTheExitStatusToTheVerdictUnlessStrict) {
  testing::RunningServer server(testing::make_naive_exp_backend());
  const std::string dir = testing::temp_dir();
  const std::string base =
      "test -q --corpus " + q(corpus()) + " --backend " + q(server.uri()) + " --stress";
  auto r =
      run_command(tapml(base + " --json " + q(dir + "/n.json") + " --junit " + q(dir + "/n.xml")));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(" passed, 0 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("swiglu (gate): holds its own range ["), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("; fails x40"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("not part of the verdict unless --stress-strict"), std::string::npos)
      << r.out;
  auto j = nlohmann::json::parse(read_file(dir + "/n.json"));
  EXPECT_EQ(j["summary"]["failed"], 0);
  EXPECT_GT(j["robustness"]["summary"]["failed"].get<int>(), 0);
  const std::string lenient = read_file(dir + "/n.xml");
  EXPECT_EQ(lenient.find("<failure"), std::string::npos);
  EXPECT_NE(lenient.find("robustness failure, not part of the verdict"), std::string::npos);

  r = run_command(tapml(base + "-strict --junit " + q(dir + "/s.xml")));
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(read_file(dir + "/s.xml").find("<failure"), std::string::npos);

  // The printed command replays exactly that test and variant.
  const std::string marker = "  replay: tapml ";
  const size_t at = r.out.find(marker);
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string args =
      r.out.substr(at + marker.size(), r.out.find('\n', at) - at - marker.size());
  auto again = run_command(tapml(args + " --stress-strict -q"));
  EXPECT_EQ(again.exit_code, 1) << args << "\n" << again.out << again.err;
  EXPECT_NE(again.out.find("robustness: 1 variant, 1 failed"), std::string::npos) << again.out;
}

TEST(StressCli, BadCombinationsAreUsageErrors) {
  for (const char* args : {"--stress x0", "--stress prefix-2.5", "--stress --synthetic",
                           "--stress-strict --synthetic"}) {
    auto r = run_command(tapml("test --corpus " + q(corpus()) + " --backend cpu " + args));
    EXPECT_EQ(r.exit_code, 2) << args << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("stress"), std::string::npos) << args << ": " << r.err;
  }
  auto r = run_command(tapml("test --conformance --backend cpu --stress"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--stress does not apply"), std::string::npos) << r.err;
  r = run_command(tapml("test --help"));
  EXPECT_NE(r.out.find("--stress-strict"), std::string::npos);
  EXPECT_NE(r.out.find("near-equal-xN"), std::string::npos);
}

}  // namespace
}  // namespace tapml

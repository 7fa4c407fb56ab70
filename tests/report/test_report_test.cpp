#include "report/test_report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <regex>

#include "core/error.h"
#include "report/xml_parse.h"

namespace tapml {
namespace {

TestResult result(int64_t id, Op op, bool pass, CheckKind failed, double ratio) {
  TestResult r;
  r.id = id;
  r.op = op;
  r.site = "blk.0.attn";
  r.phase = "decode_3";
  r.pass = pass;
  r.verdict.pass = pass;
  r.verdict.failed = failed;
  r.verdict.worst_ratio = ratio;
  r.verdict.detail = pass ? "" : "output 0 (out): 3 NaN <first at [0, 1]> & more";
  return r;
}

ReplayRun sample_run(int shard, std::vector<TestResult> results) {
  return ReplayRun{"c.corpus", "faulty:cpu?fault=x", false, shard, 2, std::move(results)};
}

TEST(TestReport, JsonRoundTripsIncludingInfiniteRatios) {
  ReplayRun run = sample_run(1, {result(1, Op::Attention, false, CheckKind::NaN, INFINITY),
                                 result(2, Op::Matmul, true, CheckKind::Pass, 0.25)});
  nlohmann::json j = nlohmann::json::parse(to_json(run).dump());
  ReplayRun back = replay_run_from_json(j, "r.json");
  ASSERT_EQ(back.results.size(), 2u);
  EXPECT_TRUE(std::isinf(back.results[0].verdict.worst_ratio));
  EXPECT_EQ(back.results[0].verdict.failed, CheckKind::NaN);
  EXPECT_EQ(back.results[1].verdict.worst_ratio, 0.25);
  EXPECT_EQ(j["summary"]["failed"], 1);
  EXPECT_EQ(j["summary"]["per_op"]["attention"]["failed"], 1);
}

TEST(TestReport, RefusedTestsAreNotOfferedNotFailures) {
  TestResult refused = result(3, Op::Matmul, false, CheckKind::Pass, 0);
  refused.verdict.detail.clear();
  refused.not_offered = "vk: no kernel for matmul with w q4_k";
  ReplayRun run = sample_run(1, {refused, result(4, Op::Matmul, true, CheckKind::Pass, 0.5)});
  nlohmann::json j = nlohmann::json::parse(to_json(run).dump());
  EXPECT_EQ(j["summary"]["failed"], 0);
  EXPECT_EQ(j["summary"]["not_offered"], 1);
  EXPECT_EQ(j["tests"][0]["check"], "not offered");
  ReplayRun back = replay_run_from_json(j, "r.json");
  EXPECT_EQ(back.results[0].not_offered, refused.not_offered);
  EXPECT_FALSE(back.results[0].failed());
  const std::string text = summary_text(run);
  EXPECT_NE(text.find("1 passed, 0 failed, 1 not offered (refused by the backend: not failures; "
                      "first: vk: no kernel for matmul with w q4_k)"),
            std::string::npos)
      << text;
  const std::string xml = junit_xml(run, {});
  EXPECT_NE(xml.find("<skipped message=\"not offered: vk: no kernel"), std::string::npos) << xml;
  EXPECT_EQ(xml.find("<failure"), std::string::npos) << xml;
}

TEST(TestReport, ShardsMergeAndOverlapsAreRefused) {
  ReplayRun a = sample_run(1, {result(3, Op::Add, true, CheckKind::Pass, 0)});
  ReplayRun b = sample_run(2, {result(1, Op::Add, false, CheckKind::Numeric, 7)});
  ReplayRun all = merge_runs({a, b});
  ASSERT_EQ(all.results.size(), 2u);
  EXPECT_EQ(all.results[0].id, 1);
  EXPECT_EQ(summarize(all.results).at("add").failed, 1);
  EXPECT_EQ(summarize(all.results).at("add").worst_ratio, 7);
  EXPECT_THROW(merge_runs({a, a}), Error);
  ReplayRun other = b;
  other.backend = "cpu";
  EXPECT_THROW(merge_runs({a, other}), Error);
  EXPECT_THROW(replay_run_from_json(nlohmann::json{{"format", "x"}}, "x.json"), Error);
  EXPECT_THROW(replay_run_from_json(nlohmann::json{{"format", "tapml-test-report"}, {"version", 1}},
                                    "x.json"),
               Error);
}

TEST(TestReport, JunitEscapesAndCountsFailures) {
  ReplayRun run = sample_run(1, {result(1, Op::Attention, false, CheckKind::NaN, INFINITY),
                                 result(2, Op::Attention, true, CheckKind::Pass, 0.1)});
  std::string x = junit_xml(run);
  EXPECT_NE(x.find("<testsuite name=\"attention\" tests=\"2\" failures=\"1\""), std::string::npos)
      << x;
  EXPECT_NE(x.find("&lt;first at [0, 1]&gt; &amp; more"), std::string::npos) << x;
  EXPECT_EQ(x.find("<first"), std::string::npos);
}

// What a CI server reads: totals on <testsuites>, every count, when and where on each
// <testsuite>, and in each <failure> body the detail and the command that replays the test.
TEST(TestReport, JunitIsWellFormedWithTotalsStampsAndReplayCommands) {
  TestResult thrown = result(4, Op::Matmul, false, CheckKind::Pass, INFINITY);
  thrown.error = "vulkan: device lost";
  ReplayRun run = sample_run(1, {result(1, Op::Attention, false, CheckKind::NaN, INFINITY),
                                 result(2, Op::Attention, true, CheckKind::Pass, 0.1),
                                 result(3, Op::Matmul, true, CheckKind::Pass, 0.2), thrown});
  run.results[0].seconds = 0.25;
  run.results[2].seconds = 0.5;
  nlohmann::json doc = testing::parse_xml_strictly(junit_xml(run));
  ASSERT_EQ(doc["tag"], "testsuites");
  const auto& all = doc["attrib"];
  EXPECT_EQ(all.value("tests", ""), "4") << doc.dump();
  // A target that throws has failed the test: it counts with the failures, as in the
  // summary line; errors would be the harness's own, which end a run instead of a test.
  EXPECT_EQ(all.value("failures", ""), "2");
  EXPECT_EQ(all.value("errors", ""), "0");
  EXPECT_EQ(all.value("skipped", ""), "0");
  EXPECT_NEAR(std::stod(all.value("time", "-1")), 0.75, 1e-9);

  auto suites = testing::children(doc, "testsuite");
  ASSERT_EQ(suites.size(), 2u);
  const std::regex iso8601(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})");
  for (const auto& suite : suites) {
    const auto& a = suite["attrib"];
    for (const char* key :
         {"name", "tests", "failures", "errors", "skipped", "time", "timestamp", "hostname"})
      EXPECT_TRUE(a.contains(key)) << key << " missing on " << suite["attrib"].dump();
    EXPECT_TRUE(std::regex_match(a.value("timestamp", ""), iso8601)) << a.dump();
    EXPECT_FALSE(a.value("hostname", "").empty());
  }

  std::vector<nlohmann::json> failures;
  for (const auto& suite : suites)
    for (const auto& tc : testing::children(suite, "testcase"))
      for (const auto& f : testing::children(tc, "failure")) failures.push_back(f);
  ASSERT_EQ(failures.size(), 2u);
  // The body holds the whole detail (the parser has unescaped it) and the replay command.
  std::string nan_body = failures[0]["text"];
  EXPECT_NE(nan_body.find("output 0 (out): 3 NaN <first at [0, 1]> & more"), std::string::npos)
      << nan_body;
  EXPECT_NE(nan_body.find("tapml test --corpus 'c.corpus' --backend 'faulty:cpu?fault=x' --id 1"),
            std::string::npos)
      << nan_body;
  std::string error_body = failures[1]["text"];
  EXPECT_EQ(failures[1]["attrib"].value("type", ""), "error");
  EXPECT_NE(error_body.find("vulkan: device lost"), std::string::npos) << error_body;
  EXPECT_NE(error_body.find("--id 4"), std::string::npos) << error_body;
}

TEST(TestReport, JunitReplayCommandOfASyntheticRunNamesItsSeed) {
  ReplayRun run = sample_run(1, {result(7, Op::Rope, false, CheckKind::Numeric, 9)});
  run.synthetic = true;
  nlohmann::json doc = testing::parse_xml_strictly(junit_xml(run, JunitOptions{.seed = 42}));
  std::string body =
      testing::children(testing::children(testing::children(doc, "testsuite")[0], "testcase")[0],
                        "failure")[0]["text"];
  EXPECT_NE(body.find("--id 7 --synthetic --seed 42\n"), std::string::npos) << body;
  // A merged report does not know the seed: the command stays runnable and says so.
  doc = testing::parse_xml_strictly(junit_xml(run));
  body = testing::children(testing::children(testing::children(doc, "testsuite")[0], "testcase")[0],
                           "failure")[0]["text"];
  EXPECT_NE(body.find("--id 7 --synthetic\n(the seed"), std::string::npos) << body;
}

TEST(TestReport, JunitStaysWellFormedWhateverTheDetailHolds) {
  TestResult r = result(1, Op::Add, false, CheckKind::Numeric, 3);
  // Control characters, markup, and bytes that are not UTF-8 (a remote device's message).
  r.verdict.detail = std::string("a\x01b\x1f ]]> <x/> \"q\" 'a' & \xc3\xa9 \xff\xc3");
  r.site = "blk.0.<&>";
  ReplayRun run = sample_run(1, {r});
  run.backend = "tcp://h:1?token=a&b=<c>";
  nlohmann::json doc = testing::parse_xml_strictly(junit_xml(run));
  std::string body =
      testing::children(testing::children(testing::children(doc, "testsuite")[0], "testcase")[0],
                        "failure")[0]["text"];
  EXPECT_NE(body.find("]]> <x/> \"q\" 'a' & \xc3\xa9"), std::string::npos) << body;
}

}  // namespace
}  // namespace tapml

#include "report/test_report.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"

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

}  // namespace
}  // namespace tapml

// The conformance suite: every catalog op x dtype combination x example passes on every
// correct backend this build has (ref, cpu, vulkan and opencl where there is a device, a
// tcp:// device serving cpu), and every injected fault fails cases of exactly the ops it
// breaks, so the failure names the op. A refused combination is "not offered", not a failure; a
// kernel that throws is one. The same seed gives the same cases whatever the op filter.
#include "replay/conformance.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "backend/forwarding_backend.h"
#include "backends/builtin.h"
#include "backends/faulty/faulty_backend.h"
#include "core/error.h"
#include "report/conformance_report.h"
#include "report/xml_parse.h"
#include "rpc/server.h"
#include "support/gpu_backends.h"
#include "support/running_server.h"

namespace tapml {
namespace {

// ref and ref?acc=f32, and the full suite of seed 1 on them, built once per process.
struct Shared {
  std::unique_ptr<Backend> source = open_backend("ref");
  std::unique_ptr<Backend> noise = open_backend("ref?acc=f32");
  ConformanceSuite suite{*source, *noise, ConformanceOptions{}};
};
Shared& shared() {
  static Shared s;
  return s;
}

// Whether a case has an input of a quantized block type ("w=q8_0").
bool has_block_input(const ConformanceResult& r) {
  return r.dtypes.find("=q") != std::string::npos;
}

// Whether a case stores into or attends over an f16 (half-precision) KV cache.
bool has_half_cache(const ConformanceResult& r) {
  return (r.op == Op::KvStore && r.dtypes.find("k_cache=f16") != std::string::npos) ||
         (r.op == Op::Attention && r.dtypes.find("k=f16") != std::string::npos);
}

// Every case was run and none failed; the table says what did. A backend without block-type
// kernels (`blocks` false) must refuse exactly the cases with a block-type input, one without
// f16 KV cache kernels (`half_cache` false) exactly those with an f16 cache.
void expect_passes(const ConformanceRun& run, bool blocks = false, bool half_cache = true) {
  ConformanceTotals t = totals(run);
  EXPECT_EQ(t.cases, int64_t(shared().suite.size()));
  EXPECT_EQ(t.failed, 0) << conformance_table(run);
  int64_t block_cases = 0, half_cache_cases = 0;
  for (const ConformanceResult& r : run.results) {
    if (has_half_cache(r)) {
      ++half_cache_cases;
      EXPECT_EQ(r.status == CaseStatus::NotOffered, !half_cache) << r.dtypes << " " << r.label;
    }
    if (!has_block_input(r)) continue;
    ++block_cases;
    if (!blocks) EXPECT_EQ(r.status, CaseStatus::NotOffered) << r.dtypes << " " << r.label;
  }
  EXPECT_GT(block_cases, 0);
  EXPECT_GT(half_cache_cases, 0);
  EXPECT_EQ(t.not_offered, (blocks ? 0 : block_cases) + (half_cache ? 0 : half_cache_cases))
      << conformance_table(run);
  EXPECT_EQ(t.passed, t.cases - t.not_offered) << conformance_table(run);
  // Every op of the catalog and each of its dtype combinations has a line.
  size_t combos = 0;
  for (const OpDef& d : all_ops()) combos += dtype_combinations(d).size();
  EXPECT_EQ(summarize(run).size(), combos);
}

TEST(Conformance, RefPasses) {
  auto ref = open_backend("ref");
  ConformanceRun run = shared().suite.run(*ref);
  expect_passes(run, true);
  // The source against itself is bit-exact.
  for (const ConformanceResult& r : run.results) EXPECT_EQ(r.ratio, 0) << r.label;
}

TEST(Conformance, CpuPasses) {
  for (const char* uri : {"cpu", "cpu?threads=1"}) {
    SCOPED_TRACE(uri);
    auto cpu = open_backend(uri);
    expect_passes(shared().suite.run(*cpu), true);
  }
}

// vulkan and opencl, each with block-type matmul and embedding kernels; their kv_store and
// attention take f32 caches only, and refuse f16 ones.
class GpuConformance : public ::testing::TestWithParam<std::string> {};

TEST_P(GpuConformance, Passes) {
  REQUIRE_GPU_BACKEND(GetParam());
  ConformanceRun run = shared().suite.run(*testing::gpu_backend(GetParam()));
  expect_passes(run, true, false);
  std::printf("%s", conformance_table(run).c_str());
}

INSTANTIATE_TEST_SUITE_P(VulkanOrOpenCl, GpuConformance,
                         ::testing::ValuesIn(testing::gpu_backend_uris()),
                         [](const auto& info) { return info.param; });

TEST(Conformance, TcpDeviceServingCpuPasses) {
  testing::RunningServer server("cpu");
  auto remote = open_backend(server.uri());
  ConformanceRun run = shared().suite.run(*remote);
  expect_passes(run, true);
  EXPECT_EQ(run.backend.rfind("tcp://127.0.0.1:", 0), 0u) << run.backend;
}

TEST(Conformance, EveryFaultFailsCasesOfExactlyTheOpsItBreaks) {
  std::printf("%-14s %s\n", "fault", "failing cases per op (check)");
  for (const std::string& fault : known_faults()) {
    SCOPED_TRACE(fault);
    auto faulty = open_backend("faulty:cpu?fault=" + fault);
    ConformanceRun run = shared().suite.run(*faulty);
    std::map<Op, int> failed;
    std::map<Op, std::set<std::string>> checks;
    for (const ConformanceResult& r : run.results)
      if (r.status == CaseStatus::Fail) failed[r.op]++, checks[r.op].insert(r.check);
    std::vector<Op> broken = fault_ops(fault);
    for (Op op : broken) EXPECT_GT(failed[op], 0) << op << "\n" << conformance_table(run);
    for (auto& [op, n] : failed)
      EXPECT_NE(std::find(broken.begin(), broken.end(), op), broken.end())
          << fault << " does not touch " << op << ", yet " << n << " of its cases failed\n"
          << conformance_table(run);
    // The summary names the op, and the failing cases say why.
    std::string summary = conformance_summary_line(run);
    for (Op op : broken)
      EXPECT_NE(summary.find(std::string(op_name(op))), std::string::npos) << summary;
    std::string line;
    for (auto& [op, n] : failed) {
      std::string why;
      for (const std::string& c : checks[op]) why += (why.empty() ? "" : ", ") + c;
      line += std::string(line.empty() ? "" : "; ") + std::string(op_name(op)) + " " +
              std::to_string(n) + " (" + why + ")";
    }
    std::printf("%-14s %s\n", fault.c_str(), line.c_str());
  }
}

// cpu without bf16 matmul weights, and an add kernel that throws.
class PartialCpu final : public ForwardingBackend {
 public:
  PartialCpu() : ForwardingBackend(open_backend("cpu")) {}
  Support supports(const OpCall& call) const override {
    if (call.op == Op::Matmul && call.inputs.at(1).dtype == DType::BF16)
      return Support::no("partial: no kernel for matmul with w bf16");
    return ForwardingBackend::supports(call);
  }
  void run(const OpCall& call) override {
    if (call.op == Op::Add) throw Error("partial: add kernel lost");
    ForwardingBackend::run(call);
  }
};

TEST(Conformance, RefusalsAreNotOfferedAndErrorsFail) {
  PartialCpu target;
  ConformanceRun run = shared().suite.run(target);
  for (const ConformanceResult& r : run.results) {
    if (r.op == Op::Matmul && r.dtypes == "x=f32 w=bf16") {
      EXPECT_EQ(r.status, CaseStatus::NotOffered) << r.label;
      EXPECT_EQ(r.detail, "partial: no kernel for matmul with w bf16");
    } else if (r.op == Op::Add) {
      EXPECT_EQ(r.status, CaseStatus::Fail) << r.label;
      EXPECT_EQ(r.check, "error");
      EXPECT_NE(r.detail.find("partial: add kernel lost"), std::string::npos) << r.detail;
    } else {
      EXPECT_EQ(r.status, CaseStatus::Pass) << op_name(r.op) << " " << r.label << ": " << r.detail;
    }
  }
  ConformanceTotals t = totals(run);
  EXPECT_GT(t.not_offered, 0);
  EXPECT_EQ(t.failed, 2);  // add's two examples
  for (const ConformanceGroup& g : summarize(run)) {
    if (g.op == Op::Matmul && g.dtypes == "x=f32 w=bf16") {
      EXPECT_EQ(g.not_offered_reason, "partial: no kernel for matmul with w bf16");
    }
  }

  // The table lists the refusal with its reason and says that it is not a failure.
  std::string table = conformance_table(run);
  EXPECT_NE(table.find("not offered: matmul [x=f32 w=bf16]: partial: no kernel"), std::string::npos)
      << table;
  EXPECT_NE(table.find("FAIL add [a=f32 b=f32]"), std::string::npos) << table;
  EXPECT_NE(conformance_summary_line(run).find("2 failed (add)"), std::string::npos);
  EXPECT_NE(conformance_summary_line(run).find("not failures"), std::string::npos);

  // JSON: versioned, infinities as null, a status per case.
  nlohmann::json j = conformance_json(run);
  EXPECT_EQ(j["format"], "tapml-conformance-report");
  EXPECT_EQ(j["version"], kConformanceReportVersion);
  EXPECT_EQ(j["summary"]["failed"], 2);
  EXPECT_EQ(j["summary"]["failed_ops"], nlohmann::json::array({"add"}));
  EXPECT_EQ(j["summary"]["not_offered"], t.not_offered);
  std::set<std::string> statuses;
  for (const auto& c : j["cases"]) {
    statuses.insert(c["status"].get<std::string>());
    if (c["op"] == "add") {
      EXPECT_TRUE(c["ratio"].is_null()) << c.dump();
    }
  }
  EXPECT_EQ(statuses, (std::set<std::string>{"pass", "fail", "not offered"}));
  EXPECT_NO_THROW(nlohmann::json::parse(j.dump()));

  // JUnit: a testsuite per op; a refusal is skipped, an error a failure.
  std::string xml = conformance_junit_xml(run);
  size_t suites = 0;
  for (size_t at = 0; (at = xml.find("<testsuite ", at)) != std::string::npos; ++at) ++suites;
  EXPECT_EQ(suites, kOpCount);
  EXPECT_NE(xml.find("<skipped message=\"not offered: partial: no kernel"), std::string::npos);
  EXPECT_NE(xml.find("<failure type=\"error\""), std::string::npos);
  EXPECT_NE(xml.find("<testsuite name=\"add\" tests=\"2\" failures=\"2\""), std::string::npos)
      << xml;

  // Read strictly, as a CI server does: the totals on <testsuites> add up, each testsuite
  // says when and where, and a failure's body holds its detail and the rerun command.
  nlohmann::json doc = testing::parse_xml_strictly(xml);
  const auto& all = doc["attrib"];
  EXPECT_EQ(all.value("tests", ""), std::to_string(t.cases));
  EXPECT_EQ(all.value("failures", ""), std::to_string(t.failed));
  EXPECT_EQ(all.value("errors", ""), "0");
  EXPECT_EQ(all.value("skipped", ""), std::to_string(t.not_offered));
  EXPECT_TRUE(all.contains("time")) << all.dump();
  size_t tests = 0;
  for (const auto& suite : testing::children(doc, "testsuite")) {
    const auto& a = suite["attrib"];
    for (const char* key : {"errors", "skipped", "timestamp", "hostname"})
      EXPECT_TRUE(a.contains(key)) << key << " missing on " << a.dump();
    tests += std::stoul(a.value("tests", "0"));
    if (a.value("name", "") != "add") continue;
    for (const auto& tc : testing::children(suite, "testcase")) {
      auto failures = testing::children(tc, "failure");
      ASSERT_EQ(failures.size(), 1u) << tc.dump();
      std::string body = failures[0]["text"];
      EXPECT_NE(body.find("partial: add kernel lost"), std::string::npos) << body;
      EXPECT_NE(body.find("rerun: tapml test --conformance --backend"), std::string::npos) << body;
      EXPECT_NE(body.find("--op '^add$' --seed 1"), std::string::npos) << body;
    }
  }
  EXPECT_EQ(tests, size_t(t.cases));
}

TEST(Conformance, SameSeedSameCasesWhateverTheFilter) {
  auto cpu = open_backend("cpu?threads=1");
  ConformanceRun all = shared().suite.run(*cpu);
  ConformanceOptions o;
  o.op_regex = "^(rope|attention)$";
  size_t progress = 0;
  o.on_result = [&](size_t done, size_t total, const ConformanceResult&) {
    EXPECT_EQ(done, ++progress);
    EXPECT_GT(total, 0u);
  };
  ConformanceRun some = run_conformance(*cpu, *shared().source, *shared().noise, o);
  ASSERT_GT(some.results.size(), 0u);
  EXPECT_EQ(progress, some.results.size());
  std::vector<const ConformanceResult*> same;
  for (const ConformanceResult& r : all.results)
    if (r.op == Op::Rope || r.op == Op::Attention) same.push_back(&r);
  ASSERT_EQ(same.size(), some.results.size());
  // The details hold the measured error: equal inputs give equal lines.
  for (size_t i = 0; i < same.size(); ++i) {
    EXPECT_EQ(some.results[i].label, same[i]->label);
    EXPECT_EQ(some.results[i].detail, same[i]->detail);
  }
  // Another seed draws other inputs.
  o.seed = 2;
  o.on_result = nullptr;
  ConformanceRun other = run_conformance(*cpu, *shared().source, *shared().noise, o);
  ASSERT_EQ(other.results.size(), some.results.size());
  int differ = 0;
  for (size_t i = 0; i < other.results.size(); ++i)
    differ += other.results[i].detail != some.results[i].detail;
  EXPECT_GT(differ, 0);
  EXPECT_EQ(other.seed, 2u);
}

TEST(Conformance, FiltersThatSelectNothingAreErrors) {
  ConformanceOptions o;
  o.op_regex = "(";
  EXPECT_THROW(ConformanceSuite(*shared().source, *shared().noise, o), Error);
  o.op_regex = "^softmax$";
  try {
    ConformanceSuite s(*shared().source, *shared().noise, o);
    ADD_FAILURE() << "a filter matching no op was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("matches no op (ops: embedding"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tapml

#include "replay/replay.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "backend/forwarding_backend.h"
#include "backends/builtin.h"
#include "carve/recorder.h"
#include "core/error.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/carve.h"
#include "support/shared.h"
#include "support/tiny_model.h"

namespace tapml {
namespace {

// A calibrated corpus of the tiny model (f16 weights to cover weight conversion).
std::string tiny_corpus() {
  static std::string path = [] {
    std::string p = testing::temp_dir() + "/tiny.corpus";
    static ModelFile m = testing::make_tiny_llama(31, DType::F16);
    testing::carve_on_ref(m, p, {1, 3, 5, 7}, 20);
    return p;
  }();
  return path;
}

TEST(Replay, UnfinishedAndEmptyCorporaAreNotReplayedUnlessAsked) {
  std::string empty = testing::temp_dir() + "/empty.corpus";
  { Corpus::create(empty); }
  try {
    replay_corpus(empty, "cpu", {});
    ADD_FAILURE() << "an empty corpus replayed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds no tests"), std::string::npos) << e.what();
  }
  ReplayOptions partial;
  partial.allow_partial = true;
  EXPECT_TRUE(replay_corpus(empty, "cpu", partial).results.empty());

  std::string unfinished = testing::temp_dir() + "/unfinished.corpus";
  std::filesystem::copy_file(tiny_corpus(), unfinished);
  { Corpus::open(unfinished).set_finished(false); }
  try {
    replay_corpus(unfinished, "cpu", {});
    ADD_FAILURE() << "an unfinished corpus replayed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("its carve did not finish"), std::string::npos)
        << e.what();
  }
  ReplayRun run = replay_corpus(unfinished, "cpu", partial);
  EXPECT_EQ(run.results.size(), Corpus::open(tiny_corpus()).list().size());
}

TEST(Replay, CorrectBackendsPassEveryTest) {
  Corpus c = Corpus::open(tiny_corpus());
  TolerancePolicy policy;
  for (const char* uri : {"ref", "cpu?threads=2", "cpu?threads=1"}) {
    auto b = open_backend(uri);
    for (const TestInfo& info : c.list()) {
      TestResult r = replay_test(*b, c.load(info.id), policy);
      EXPECT_TRUE(r.pass) << uri << " #" << info.id << " " << info.site << ": "
                          << (r.error.empty() ? r.verdict.detail : r.error);
    }
  }
}

TEST(Replay, SyntheticTwinsPassOnCorrectBackends) {
  Corpus c = Corpus::open(tiny_corpus());
  auto ref = open_backend("ref"), plain = open_backend("ref?acc=f32"), cpu = open_backend("cpu");
  TolerancePolicy policy;
  for (const TestInfo& info : c.list()) {
    TestCase carved = c.load(info.id);
    TestCase t = synthesize(carved, 7, *ref, *plain);
    EXPECT_EQ(t.signature(), carved.signature());
    TestResult r = replay_test(*cpu, t, policy);
    EXPECT_TRUE(r.pass) << info.site << ": " << r.verdict.detail << r.error;
    // Deterministic in the seed.
    TestCase again = synthesize(carved, 7, *ref, *plain);
    ASSERT_EQ(again.inputs.size(), t.inputs.size());
    for (size_t i = 0; i < t.inputs.size(); ++i)
      EXPECT_EQ(again.inputs[i].to_f32(), t.inputs[i].to_f32());
  }
}

TEST(Replay, NoiseFloorsAreMeasured) {
  Corpus c = Corpus::open(tiny_corpus());
  bool some_nonzero = false;
  for (const TestInfo& info : c.list()) {
    TestCase t = c.load(info.id);
    ASSERT_EQ(t.noise.size(), t.outputs.size()) << info.site;
    for (double n : t.noise) {
      EXPECT_GE(n, 0.0);
      EXPECT_LT(n, 1e-3) << info.site;
      some_nonzero |= n > 0;
    }
  }
  EXPECT_TRUE(some_nonzero);
}

TEST(Replay, AFailingBackendBecomesAResultNotAnException) {
  Corpus c = Corpus::open(tiny_corpus());
  auto ref = open_backend("ref");
  TestCase t = c.load(c.list("embedding").at(0).id);
  t.inputs[1].mutable_data<int32_t>()[0] = 100000;  // outside the vocabulary
  TestResult r = replay_test(*ref, t, TolerancePolicy{});
  EXPECT_FALSE(r.pass);
  EXPECT_NE(r.error.find("vocabulary"), std::string::npos) << r.error;
}

// A backend that refuses matmul (as one without a kernel for a weight type does).
class NoMatmul final : public ForwardingBackend {
 public:
  NoMatmul() : ForwardingBackend(open_backend("ref")) {}
  Support supports(const OpCall& call) const override {
    if (call.op == Op::Matmul) return Support::no("nomatmul: no kernel for matmul");
    return ForwardingBackend::supports(call);
  }
};

TEST(Replay, ARefusedCallIsNotOfferedNotFailed) {
  Corpus c = Corpus::open(tiny_corpus());
  NoMatmul target;
  TestResult m = replay_test(target, c.load(c.list("matmul").at(0).id), TolerancePolicy{});
  EXPECT_FALSE(m.pass);
  EXPECT_FALSE(m.failed());
  EXPECT_TRUE(m.error.empty()) << m.error;
  EXPECT_EQ(m.not_offered, "nomatmul: no kernel for matmul");
  TestResult e = replay_test(target, c.load(c.list("embedding").at(0).id), TolerancePolicy{});
  EXPECT_TRUE(e.pass) << e.error << e.verdict.detail;
  EXPECT_TRUE(e.not_offered.empty());
}

}  // namespace
}  // namespace tapml

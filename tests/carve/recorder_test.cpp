#include "carve/recorder.h"

#include <gtest/gtest.h>

#include <set>

#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/shared.h"
#include "support/tiny_model.h"

namespace tapml {
namespace {

// Carves the tiny model over two prompts into a fresh corpus.
CarveStats carve_tiny(const std::string& path, int keep, int* calibrated = nullptr) {
  ModelFile m = testing::make_tiny_llama(21);
  Corpus corpus = Corpus::create(path);
  Recorder rec(corpus, keep, [&](TestCase& t) {
    if (calibrated) ++*calibrated;
    t.noise.assign(t.outputs.size(), 0.5);
  });
  Session s(m, Placement("ref"));
  s.dispatcher().add_observer(&rec);
  GenerateOptions o;
  o.steps = 12;
  for (int p = 0; p < 2; ++p) {
    rec.set_prompt_index(p);
    generate(s, p == 0 ? std::vector<int>{1, 5, 6} : std::vector<int>{1, 9}, o);
  }
  rec.finish();
  return rec.stats();
}

TEST(Recorder, KeepsOneTestPerSignatureWithKeepOne) {
  std::string path = testing::temp_dir() + "/k1.corpus";
  int calibrated = 0;
  CarveStats st = carve_tiny(path, 1, &calibrated);
  Corpus c = Corpus::open(path);
  EXPECT_EQ(st.tests_kept, st.signatures);
  EXPECT_EQ(int64_t(c.list().size()), st.tests_kept);
  EXPECT_EQ(calibrated, st.tests_kept);
  EXPECT_GT(st.calls_seen, st.tests_kept);
  std::set<std::string> signatures;
  for (const TestInfo& t : c.list()) {
    EXPECT_TRUE(signatures.insert(t.signature).second) << t.signature;
    EXPECT_EQ(t.kept_because, "first");
  }
  // 2 prompts x 12 positions: one prefill forward each, then 9 and 10 decode forwards;
  // per forward 2 layers x 16 calls + embedding + output_norm + output.
  EXPECT_EQ(st.calls_seen, (1 + 9 + 1 + 10) * (2 * 16 + 3));
}

TEST(Recorder, KeepsMoreRepresentativesAndTheirReasons) {
  std::string path = testing::temp_dir() + "/k3.corpus";
  CarveStats st = carve_tiny(path, 3);
  Corpus c = Corpus::open(path);
  EXPECT_GT(st.tests_kept, st.signatures);
  EXPECT_LE(st.tests_kept, 3 * st.signatures);
  std::set<std::string> reasons;
  for (const TestInfo& t : c.list()) reasons.insert(t.kept_because);
  EXPECT_TRUE(reasons.count("first") && reasons.count("max_input") && reasons.count("late_decode"));
}

TEST(Recorder, RecordsInPlaceInputsBeforeTheWrite) {
  std::string path = testing::temp_dir() + "/inplace.corpus";
  carve_tiny(path, 3);
  Corpus c = Corpus::open(path);
  int checked = 0;
  for (const TestInfo& info : c.list("kv_store")) {
    // Only the first generation starts from an empty cache; later ones overwrite old rows.
    if (info.prompt_index != 0) continue;
    TestCase t = c.load(info.id);
    int32_t pos = t.inputs[4].data<int32_t>()[0];
    int64_t C = t.inputs[0].shape()[1], T = t.inputs[2].shape()[0];
    for (int64_t i = 0; i < T * C; ++i) {
      // Rows pos.. of the recorded cache input are still empty; the output holds the keys.
      EXPECT_EQ(t.inputs[0].data<float>()[pos * C + i], 0.0f) << info.id;
      EXPECT_EQ(t.outputs[0].data<float>()[pos * C + i], t.inputs[2].data<float>()[i]);
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(Recorder, TestsCarryTheirOriginAndWeights) {
  std::string path = testing::temp_dir() + "/origin.corpus";
  carve_tiny(path, 2);
  Corpus c = Corpus::open(path);
  auto q = c.list("matmul", "blk\\.1\\.attn_q");
  ASSERT_FALSE(q.empty());
  TestCase t = c.load(q[0].id);
  EXPECT_EQ(t.site.layer, 1);
  EXPECT_EQ(t.input_weights.at(1), "blk.1.attn_q.weight");
  EXPECT_EQ(t.input_weights.at(0), "");
  EXPECT_EQ(t.noise, std::vector<double>{0.5});
}

}  // namespace
}  // namespace tapml

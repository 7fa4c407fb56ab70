#include "runtime/dispatcher.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/tiny_model.h"

namespace tapml {
namespace {

GenerateResult run_tiny(Session& s, int steps) {
  GenerateOptions o;
  o.steps = steps;
  return generate(s, {1, 5, 7, 9}, o);
}

TEST(Dispatcher, WeightsCrossToABackendOnce) {
  ModelFile m = testing::make_tiny_llama(1);
  Session s(m, Placement("cpu"));
  run_tiny(s, 12);
  run_tiny(s, 12);  // a second generation must not upload again
  const TransferStats& st = s.dispatcher().stats().at("cpu");
  EXPECT_EQ(st.weight_uploads, int64_t(m.weights.size()));
  int64_t bytes = 0;
  for (auto& [n, t] : m.weights) bytes += int64_t(t.nbytes());
  EXPECT_EQ(st.weight_bytes, bytes);
  EXPECT_EQ(st.activation_moves, 0);
}

TEST(Dispatcher, ActivationsMoveOnlyWhereAConsumerLivesElsewhere) {
  ModelFile m = testing::make_tiny_llama(2);
  Placement p("ref");
  p.add_rule("blk\\.0\\.ffn_act=cpu");  // swiglu(gate, up) of layer 0 on cpu, all else on ref
  Session s(m, p);
  GenerateResult r = run_tiny(s, 10);
  int forwards = 1 + r.decode_tokens;
  const auto& stats = s.dispatcher().stats();
  // gate and up go to cpu; swiglu's output comes back for ffn_down: per forward, 2 + 1.
  EXPECT_EQ(stats.at("cpu").activation_moves, 2 * forwards);
  EXPECT_EQ(stats.at("ref").activation_moves, forwards);
  EXPECT_EQ(stats.at("cpu").weight_uploads, 0);
  EXPECT_EQ(stats.at("cpu").calls, forwards);
}

TEST(Dispatcher, AWeightPlacedElsewhereIsUploadedOnceThere) {
  ModelFile m = testing::make_tiny_llama(3);
  Placement p("ref");
  p.add_rule("blk\\.1\\.attn_q=cpu");
  Session s(m, p);
  GenerateResult r = run_tiny(s, 10);
  int forwards = 1 + r.decode_tokens;
  const auto& stats = s.dispatcher().stats();
  EXPECT_EQ(stats.at("cpu").weight_uploads, 1);
  EXPECT_EQ(stats.at("cpu").activation_moves, forwards);  // the normed x
  EXPECT_EQ(stats.at("ref").activation_moves, forwards);  // q back for rope
}

TEST(Dispatcher, MixedPlacementMatchesSinglePlacement) {
  ModelFile m = testing::make_tiny_llama(4);
  Session all_ref(m, Placement("ref"));
  std::vector<int> want = run_tiny(all_ref, 30).token_ids;
  for (const char* rule : {"matmul=cpu", "blk\\.1\\.=cpu", "kv_store=cpu", "attention=cpu"}) {
    Placement p("ref");
    p.add_rule(rule);
    Session s(m, p);
    EXPECT_EQ(run_tiny(s, 30).token_ids, want) << rule;
  }
}

// An observer that checks in-place writes: before kv_store its cache input must still hold
// the old rows, after it the new ones.
class CacheWatcher : public CallObserver {
 public:
  void before_call(const CallEvent& e, Dispatcher& d) override {
    if (e.site != Site{0, "kv_store"}) return;
    before_ = d.read(e.inputs[0]);
    k_ = d.read(e.inputs[2]);
    pos_ = d.read(e.inputs[4]).data<int32_t>()[0];
  }
  void after_call(const CallEvent& e, Dispatcher& d) override {
    if (e.site != Site{0, "kv_store"}) return;
    Tensor after = d.read(e.outputs[0]);
    int64_t C = after.shape()[1], T = k_.shape()[0];
    for (int64_t i = 0; i < T * C; ++i) {
      ASSERT_EQ(after.data<float>()[pos_ * C + i], k_.data<float>()[i]);
      if (before_.data<float>()[pos_ * C + i] != 0.0f) stale_++;
    }
    checked_++;
  }
  Tensor before_, k_;
  int pos_ = 0, checked_ = 0, stale_ = 0;
};

TEST(Dispatcher, ObserversSeeInPlaceInputsBeforeTheWrite) {
  ModelFile m = testing::make_tiny_llama(5);
  for (const char* backend : {"ref", "cpu"}) {
    Session s(m, Placement(backend));
    CacheWatcher w;
    s.dispatcher().add_observer(&w);
    GenerateResult r = run_tiny(s, 8);
    EXPECT_EQ(w.checked_, 1 + r.decode_tokens);
    EXPECT_EQ(w.stale_, 0);  // rows not yet written are still zero before the store
  }
}

TEST(DevicePool, SessionsShareDevicesAndWeights) {
  ModelFile m = testing::make_tiny_llama(7);
  DevicePool pool;
  for (int i = 0; i < 3; ++i) {
    Session s(m, Placement("cpu"), pool);
    run_tiny(s, 6);
    // Only the first session uploads; later ones find every weight on the device.
    EXPECT_EQ(s.dispatcher().stats().at("cpu").weight_uploads,
              i == 0 ? int64_t(m.weights.size()) : 0);
  }
  DeviceCounters c = pool.counters("cpu");
  EXPECT_EQ(c.opens, 1);
  EXPECT_EQ(c.weight_uploads, int64_t(m.weights.size()));
  EXPECT_EQ(pool.uris(), std::vector<std::string>{"cpu"});
  EXPECT_EQ(pool.counters("ref").opens, 0);
  // The same weights reach a second device once too, and a mixed placement reuses both.
  Placement p("cpu");
  p.add_rule("matmul=ref");
  Session mixed(m, p, pool);
  run_tiny(mixed, 6);
  EXPECT_EQ(pool.counters("cpu").weight_uploads, int64_t(m.weights.size()));
  EXPECT_GT(pool.counters("ref").weight_uploads, 0);
  EXPECT_LT(pool.counters("ref").weight_uploads, int64_t(m.weights.size()));
}

TEST(Site, CanonicalFormsRoundTrip) {
  EXPECT_EQ((Site{3, "attn_q"}).str(), "blk.3.attn_q");
  EXPECT_EQ((Site{-1, "token_embd"}).str(), "token_embd");
  for (const char* text : {"blk.0.attn_q", "blk.12.ffn_act", "output", "token_embd"})
    EXPECT_EQ(Site::parse(text).str(), text);
  EXPECT_EQ(Site::parse("blk.12.ffn_act"), (Site{12, "ffn_act"}));
  // Not a block: a leading zero, no number, or no role after the layer.
  EXPECT_EQ(Site::parse("blk.01.x").layer, -1);
  EXPECT_EQ(Site::parse("blk.x.y").layer, -1);
  EXPECT_THROW(Site::parse("blk.3."), Error);
  EXPECT_THROW(Site::parse(""), Error);
  EXPECT_EQ(Phase::parse("prefill"), Phase::prefill());
  EXPECT_EQ(Phase::parse("decode_17"), Phase::decode(17));
  EXPECT_EQ(Phase::decode(17).str(), "decode_17");
  for (const char* bad : {"decode_0", "decode_", "decode_-1", "decode_07", "prefil", ""})
    EXPECT_THROW(Phase::parse(bad), Error) << bad;
}

TEST(Dispatcher, ErrorsNameTheSite) {
  ModelFile m = testing::make_tiny_llama(6);
  Session s(m, Placement("ref"));
  std::vector<int32_t> bad{1, 99};
  EXPECT_THROW(s.forward(bad, false), Error);
  Placement p("ref");
  EXPECT_THROW(p.add_rule("no-equals-sign"), Error);
  EXPECT_THROW(p.add_rule("([=cpu"), Error);
}

}  // namespace
}  // namespace tapml

#include "runtime/dispatcher.h"

#include <gtest/gtest.h>

#include "backend/forwarding_backend.h"
#include "backend/host_backend.h"
#include "backend/registry.h"
#include "backends/builtin.h"
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

Tensor counting_f32(Shape shape, float first) {
  Tensor t(DType::F32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.mutable_data<float>()[i] = first + float(i);
  return t;
}

TEST(Dispatcher, AReshapeViewFeedsAnOpTheSameBytes) {
  // w [6, 4] holds 0..23; read as [3, 8] its row r is 8r .. 8r+7.
  const std::map<std::string, Tensor> weights = {{"w", counting_f32({6, 4}, 0)}};
  for (const char* backend : {"ref", "cpu"}) {
    SCOPED_TRACE(backend);
    DevicePool pool;
    Dispatcher d(weights, Placement(backend), pool);
    Val w = d.weight("w");
    Val w38 = d.reshape(w, Shape{3, 8});
    EXPECT_EQ(d.type(w38), (TensorType{DType::F32, {3, 8}}));
    Val x = d.input("x", counting_f32({1, 8}, 1));  // 1..8
    Val y = d.call(Site{0, "test_matmul"}, Op::Matmul, {}, {x, w38})[0];
    Tensor out = d.read(y);
    ASSERT_EQ(out.shape(), (Shape{1, 3}));
    for (int64_t r = 0; r < 3; ++r) {
      float want = 0;
      for (int64_t k = 0; k < 8; ++k) want += float(k + 1) * float(8 * r + k);
      EXPECT_EQ(out.data<float>()[r], want) << r;
    }
    // Only the whole weight is the model's tensor of that name.
    EXPECT_EQ(d.weight_name(w), "w");
    EXPECT_EQ(d.weight_name(w38), "");
    EXPECT_EQ(d.weight_name(d.rows(w, 2, 3)), "");
    EXPECT_THROW(d.weight_tensor(w38), Error);

    // An op's output on the device, viewed [2, 6] -> [3, 4] and added to counting values.
    Val a = d.input("a", counting_f32({2, 6}, 0));
    Val b = d.input("b", counting_f32({2, 6}, 100));
    Val sum = d.call(Site{0, "test_add"}, Op::Add, {}, {a, b})[0];  // 100 + 2i
    Val view = d.reshape(sum, Shape{3, 4});
    Val c = d.input("c", counting_f32({3, 4}, 0));
    Tensor got = d.read(d.call(Site{0, "test_add2"}, Op::Add, {}, {view, c})[0]);
    ASSERT_EQ(got.shape(), (Shape{3, 4}));
    for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(got.data<float>()[i], 100.0f + 3.0f * float(i)) << i;
    // A view of a view, and the bytes read back in the view's shape.
    Tensor flat = d.read(d.reshape(view, Shape{12, 1}));
    EXPECT_EQ(flat.shape(), (Shape{12, 1}));
    EXPECT_EQ(flat.data<float>()[11], 122.0f);

    EXPECT_THROW(d.reshape(sum, Shape{5, 2}), Error);
    EXPECT_THROW(d.reshape(w, Shape{-4, -6}), Error);
    d.end_step();
  }
}

// ref, counting support checks and refusing additions of more than two rows.
class CountsChecks final : public ForwardingBackend {
 public:
  explicit CountsChecks(int* checks) : ForwardingBackend(make_backend("ref")), checks_(checks) {}
  Support supports(const OpCall& c) const override {
    ++*checks_;
    if (c.op == Op::Add && c.inputs[0].shape[0] > 2) return Support::no("more than two rows");
    return ForwardingBackend::supports(c);
  }

 private:
  int* checks_;
};

TEST(Dispatcher, ARepeatedCallIsCheckedOnceAChangedOneAgain) {
  static int checks = 0;
  register_builtin_backends();
  register_backend("counts_checks", "test",
                   [](const BackendUri&) { return std::make_unique<CountsChecks>(&checks); });
  checks = 0;
  const std::map<std::string, Tensor> weights;
  DevicePool pool;
  Dispatcher d(weights, Placement("counts_checks"), pool);
  auto step = [&](const Site& site, Op op, const Attrs& attrs, Shape shape, bool twice) {
    Val a = d.input("a", counting_f32(shape, 1));
    Val b = d.input("b", counting_f32(shape, 10));
    Tensor out = d.read(d.call(site, op, attrs,
                               twice           ? std::vector<Val>{a, a}
                               : op == Op::Add ? std::vector<Val>{a, b}
                                               : std::vector<Val>{a})[0]);
    d.end_step();
    return out.data<float>()[1];  // the second element: a = 2, b = 11
  };
  const Site s{0, "sum"};
  EXPECT_EQ(step(s, Op::Add, {}, Shape{1, 4}, false), 13.0f);
  EXPECT_EQ(checks, 1);
  EXPECT_EQ(step(s, Op::Add, {}, Shape{1, 4}, false), 13.0f);
  EXPECT_EQ(checks, 1);  // the same call at the same place: not asked again
  // Other input types are asked again, and refused, naming the site.
  try {
    step(s, Op::Add, {}, Shape{3, 4}, false);
    ADD_FAILURE() << "three rows were not refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blk.0.sum"), std::string::npos) << e.what();
  }
  d.end_step();
  EXPECT_EQ(checks, 2);
  EXPECT_EQ(step(s, Op::Add, {}, Shape{1, 4}, false), 13.0f);
  EXPECT_EQ(checks, 3);
  // The same value twice (inputs aliasing differently), another site, other attributes:
  // each asked again, and run with what this call gave.
  EXPECT_EQ(step(s, Op::Add, {}, Shape{1, 4}, true), 4.0f);
  EXPECT_EQ(checks, 4);
  EXPECT_EQ(step(Site{1, "sum"}, Op::Add, {}, Shape{1, 4}, true), 4.0f);
  EXPECT_EQ(checks, 5);
  EXPECT_EQ(step(s, Op::Scale, {{"s", 2.0}}, Shape{1, 4}, false), 4.0f);
  EXPECT_EQ(step(s, Op::Scale, {{"s", 3.0}}, Shape{1, 4}, false), 6.0f);
  EXPECT_EQ(checks, 7);
  EXPECT_EQ(step(s, Op::Scale, {{"s", 3.0}}, Shape{1, 4}, false), 6.0f);
  EXPECT_EQ(checks, 7);
  // The same types through a view at another offset: asked again, and run on that row.
  auto row_step = [&](int64_t r) {
    Val a = d.input("a", counting_f32(Shape{2, 4}, 1));  // rows 1..4 and 5..8
    Val b = d.input("b", counting_f32(Shape{1, 4}, 10));
    Tensor out = d.read(d.call(s, Op::Add, {}, {d.rows(a, r, 1), b})[0]);
    d.end_step();
    return out.data<float>()[1];
  };
  EXPECT_EQ(row_step(0), 13.0f);
  EXPECT_EQ(checks, 8);
  EXPECT_EQ(row_step(0), 13.0f);
  EXPECT_EQ(checks, 8);
  EXPECT_EQ(row_step(1), 17.0f);
  EXPECT_EQ(checks, 9);
}

TEST(Dispatcher, DecodeStepsGiveTheirBuffersBack) {
  ModelFile m = testing::make_tiny_llama(4);
  Session s(m, Placement("cpu"));
  run_tiny(s, 4);
  auto& cpu = dynamic_cast<HostBackend&>(s.dispatcher().backend("cpu"));
  const size_t held = cpu.bytes_allocated();  // weights and the KV cache
  EXPECT_GT(held, size_t(0));
  run_tiny(s, 16);
  EXPECT_EQ(cpu.bytes_allocated(), held);
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

// The oracle against real backends on a real run: every op call of stories260K (prefill and
// decode) is judged as a carved test would be, with ref (f64 accumulation) as the source,
// ref?acc=f32 as the noise run, and the cpu backend (Highway f32 kernels in another
// summation order) as a correct target, which must pass every call; each realistic fault of
// the faulty backend must be caught wherever it changes the output. docs/oracle.md reports
// the wider measurement these numbers come from.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/host_call.h"
#include "backends/builtin.h"
#include "check/oracle.h"
#include "model/model_file.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/shared.h"

namespace tapml {
namespace {

struct Call {
  Op op;
  std::string site, phase;
  Attrs attrs;
  std::vector<Tensor> inputs;
};

// Keeps every call's inputs as they were before it ran.
class CallLog final : public CallObserver {
 public:
  std::vector<Call> calls;
  void before_call(const CallEvent& e, Dispatcher& d) override {
    Call c{e.call->op, e.call->site, e.phase.str(), e.call->attrs, {}};
    for (Val v : e.inputs) c.inputs.push_back(d.read(v).clone());
    calls.push_back(std::move(c));
  }
};

// A carved test: the source's outputs and the noise floor of each.
struct Carved {
  const Call* call;
  int64_t reduction_length;
  std::vector<Tensor> expected;
  std::vector<double> noise;
};

class OracleOnStories : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    model_ = std::make_unique<ModelFile>(
        load_model(testing::shared_path("models/stories260K/stories260K.bin")));
    Session session(*model_, Placement("ref"), 96);
    log_ = std::make_unique<CallLog>();
    session.dispatcher().add_observer(log_.get());
    GenerateOptions o;
    o.steps = 96;  // BOS + prompt, then greedy decoding to position 96
    generate(session, {1, 403, 407, 261, 378}, o);
    session.dispatcher().remove_observer(log_.get());

    source_ = open_backend("ref");
    std::unique_ptr<Backend> plain = open_backend("ref?acc=f32");
    carved_ = std::make_unique<std::vector<Carved>>();
    for (const Call& c : log_->calls) {
      std::vector<TensorType> types;
      for (const Tensor& t : c.inputs) types.push_back({t.dtype(), t.shape()});
      Carved t{&c, op_def(c.op).reduction_length(types, c.attrs), {}, {}};
      t.expected = run_host_call(*source_, c.op, c.attrs, c.inputs).outputs;
      std::vector<Tensor> f32 = run_host_call(*plain, c.op, c.attrs, c.inputs).outputs;
      for (size_t i = 0; i < f32.size(); ++i)
        t.noise.push_back(measure(t.expected[i], f32[i], 1).error);
      carved_->push_back(std::move(t));
    }
  }
  static void TearDownTestSuite() {
    carved_.reset();
    source_.reset();
    log_.reset();
    model_.reset();
  }

  static Verdict replay(Backend& target, const Carved& t, bool calibrated = true) {
    HostCallResult r = run_host_call(target, t.call->op, t.call->attrs, t.call->inputs);
    return judge(TolerancePolicy(), t.call->op, t.reduction_length, t.expected, r.outputs,
                 r.guards_intact,
                 calibrated ? std::span<const double>(t.noise) : std::span<const double>());
  }

  static std::unique_ptr<ModelFile> model_;
  static std::unique_ptr<CallLog> log_;
  static std::unique_ptr<Backend> source_;
  static std::unique_ptr<std::vector<Carved>> carved_;
};

std::unique_ptr<ModelFile> OracleOnStories::model_;
std::unique_ptr<CallLog> OracleOnStories::log_;
std::unique_ptr<Backend> OracleOnStories::source_;
std::unique_ptr<std::vector<Carved>> OracleOnStories::carved_;

TEST_F(OracleOnStories, CorrectBackendsPassEveryCall) {
  ASSERT_GT(carved_->size(), 1000u);
  std::unique_ptr<Backend> cpu = open_backend("cpu?threads=2");
  std::map<Op, double> worst;
  for (const Carved& t : *carved_) {
    Verdict self = replay(*source_, t);
    ASSERT_TRUE(self.pass) << t.call->site << ": " << self.detail;
    for (bool calibrated : {true, false}) {
      Verdict v = replay(*cpu, t, calibrated);
      ASSERT_TRUE(v.pass) << t.call->site << " " << t.call->phase << ": " << v.detail;
      worst[t.call->op] = std::max(worst[t.call->op], v.worst_ratio);
    }
  }
  // "Comfortably": no op comes within 2x of its tolerance.
  for (const auto& [op, ratio] : worst) EXPECT_LT(ratio, 0.5) << op;
}

// The smallest mean square of a row of x [T, D].
double smallest_mean_square(const Tensor& x) {
  const int64_t D = x.shape()[1];
  double smallest = INFINITY;
  for (int64_t r = 0; r < x.shape()[0]; ++r) {
    double ss = 0;
    for (int64_t d = 0; d < D; ++d) ss += double(x.get_f32(r * D + d)) * x.get_f32(r * D + d);
    smallest = std::min(smallest, ss / double(D));
  }
  return smallest;
}

TEST_F(OracleOnStories, RealisticFaultsAreCaughtWhereverTheyShow) {
  std::unique_ptr<Backend> cpu = open_backend("cpu?threads=2");
  const std::vector<std::string> faults = {"softmax_f16", "rope_pairing", "gqa_map",    "kv_offset",
                                           "matmul_tail", "rmsnorm_eps",  "silu_approx"};
  std::vector<std::unique_ptr<Backend>> faulty;
  for (const std::string& f : faults) faulty.push_back(open_backend("faulty:cpu?fault=" + f));
  std::vector<int64_t> shown(faults.size(), 0);
  for (const Carved& t : *carved_) {
    HostCallResult good = run_host_call(*cpu, t.call->op, t.call->attrs, t.call->inputs);
    for (size_t f = 0; f < faults.size(); ++f) {
      HostCallResult bad = run_host_call(*faulty[f], t.call->op, t.call->attrs, t.call->inputs);
      bool changed = false;
      for (size_t i = 0; i < good.outputs.size(); ++i)
        changed |= std::memcmp(good.outputs[i].bytes(), bad.outputs[i].bytes(),
                               good.outputs[i].nbytes()) != 0;
      if (!changed) continue;
      // A missing eps changes a row by eps / (2 * mean square): beyond f32 noise only where
      // rows are not large. Every test with a row of mean square <= 1 must fail.
      if (faults[f] == "rmsnorm_eps" && smallest_mean_square(t.call->inputs[0]) > 1) continue;
      ++shown[f];
      Verdict v = judge(TolerancePolicy(), t.call->op, t.reduction_length, t.expected, bad.outputs,
                        bad.guards_intact, t.noise);
      ASSERT_FALSE(v.pass) << faults[f] << " at " << t.call->site << " " << t.call->phase << ": "
                           << v.detail;
    }
  }
  for (size_t f = 0; f < faults.size(); ++f) EXPECT_GT(shown[f], 10) << faults[f];
}

TEST_F(OracleOnStories, ExpOverflowIsCaughtWhereScoresAreLarge) {
  // stories260K's scores stay far below 88, so build calls that reach past it.
  std::unique_ptr<Backend> faulty = open_backend("faulty:cpu?fault=exp_overflow");
  const int64_t T = 2, P = 6, hd = 8;
  std::vector<float> q(T * hd, 4.0f), kv(P * hd, 0.5f);
  for (int64_t i = 0; i < hd; ++i) kv[size_t(2 * hd + i)] = 12.0f;  // q.k = 384
  Attrs attrs{{"n_heads", 1}, {"n_kv_heads", 1}, {"head_dim", hd}, {"scale", 0.35}};
  std::vector<Tensor> in{Tensor::from_f32({T, hd}, q), Tensor::from_f32({P, hd}, kv),
                         Tensor::from_f32({P, hd}, kv)};
  HostCallResult ref = run_host_call(*source_, Op::Attention, attrs, in);
  HostCallResult bad = run_host_call(*faulty, Op::Attention, attrs, in);
  Verdict v = judge(TolerancePolicy(), Op::Attention, P * hd, ref.outputs, bad.outputs,
                    bad.guards_intact, {});
  EXPECT_EQ(v.failed, CheckKind::NaN) << v.detail;

  std::vector<float> gate{1, -3, 95, 0.5f}, up{1, 2, 3, 4};
  std::vector<Tensor> sw{Tensor::from_f32({1, 4}, gate), Tensor::from_f32({1, 4}, up)};
  HostCallResult sref = run_host_call(*source_, Op::Swiglu, {}, sw);
  HostCallResult sbad = run_host_call(*faulty, Op::Swiglu, {}, sw);
  EXPECT_EQ(
      judge(TolerancePolicy(), Op::Swiglu, 1, sref.outputs, sbad.outputs, sbad.guards_intact, {})
          .failed,
      CheckKind::NaN);
}

}  // namespace
}  // namespace tapml

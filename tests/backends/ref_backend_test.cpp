// The new ops' meaning, checked on small inputs against the catalog's formulas written out
// here independently (in long double where it matters): on ref, on ref?acc=f32 (the noise
// reference must compute the same op) and on cpu.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "backend/host_call.h"
#include "backends/builtin.h"
#include "core/error.h"

namespace tapml {
namespace {

using LD = long double;

const char* const kBackends[] = {"ref", "ref?acc=f32", "ref?acc=q8"};

Tensor f32(Shape shape, std::vector<float> v) { return Tensor::from_f32(std::move(shape), v); }

std::vector<float> run(const std::string& uri, Op op, const Attrs& attrs,
                       const std::vector<Tensor>& inputs) {
  std::unique_ptr<Backend> b = open_backend(uri);
  HostCallResult r = run_host_call(*b, op, attrs, inputs, "test");
  EXPECT_TRUE(r.guards_intact[0]) << uri;
  return r.outputs.at(0).to_f32();
}

// Every backend's output is within rel * max|want| of want, element by element.
void expect_op(Op op, const Attrs& attrs, const std::vector<Tensor>& inputs,
               const std::vector<LD>& want, double rel = 1e-6) {
  LD scale = 0;
  for (LD w : want) scale = std::max(scale, std::fabs(w));
  for (const char* uri : kBackends) {
    std::vector<float> got = run(uri, op, attrs, inputs);
    ASSERT_EQ(got.size(), want.size()) << uri;
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(double(got[i]), double(want[i]), rel * double(scale) + 1e-30)
          << uri << " " << op_name(op) << " element " << i;
  }
}

TEST(NewOpsMeaning, LayerNormOfOneToFour) {
  // mean 2.5, biased variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25.
  const LD inv = 1 / std::sqrt(1.25L + 1e-5L);
  std::vector<LD> want;
  const float w[] = {1, -2, 0.5f, 3};
  for (int i = 0; i < 4; ++i) want.push_back((LD(i + 1) - 2.5L) * inv * w[i]);
  expect_op(Op::LayerNorm, {{"eps", 1e-5}}, {f32({1, 4}, {1, 2, 3, 4}), f32({4}, {1, -2, 0.5f, 3})},
            want);
  // The same row lifted by 10000: x - mean is what it was, where E[x^2] - E[x]^2 in f32
  // would be 1e8 - 1e8 (ref?acc=f32 computes the variance from the deviations too).
  expect_op(Op::LayerNorm, {{"eps", 1e-5}},
            {f32({2, 4}, {10001, 10002, 10003, 10004, 1, 2, 3, 4}), f32({4}, {1, -2, 0.5f, 3})},
            {want[0], want[1], want[2], want[3], want[0], want[1], want[2], want[3]}, 1e-5);
  // A constant row is all zeros; eps keeps it finite.
  expect_op(Op::LayerNorm, {{"eps", 1e-5}}, {f32({1, 3}, {2, 2, 2}), f32({3}, {1, 1, 1})},
            {0, 0, 0});
}

TEST(NewOpsMeaning, BiasMulScale) {
  expect_op(Op::Bias, {}, {f32({2, 3}, {1, 2, 3, 4, 5, 6}), f32({3}, {10, 20, 30})},
            {11, 22, 33, 14, 25, 36}, 0);
  expect_op(Op::Mul, {}, {f32({2, 2}, {1, -2, 3, 1e20f}), f32({2, 2}, {0.5f, 4, -3, 1e15f})},
            {0.5L, -8, -9, LD(1e20f) * LD(1e15f)});
  expect_op(Op::Scale, {{"s", -0.25}}, {f32({1, 3}, {4, -8, 1e30f})}, {-1, 2, -0.25L * LD(1e30f)},
            0);
}

TEST(NewOpsMeaning, SoftcapIsCapTimesTanh) {
  std::vector<float> x = {0, 30, -60, 1e-3f, -1e-3f, 1000, -1e6f, 7};
  std::vector<LD> want;
  for (float v : x) want.push_back(30 * std::tanh(LD(v) / 30));
  expect_op(Op::Softcap, {{"cap", 30}}, {f32({2, 4}, x)}, want);
  // Near 0 the output is x itself to f32 precision: checked relative to each element.
  for (const char* uri : kBackends) {
    std::vector<float> got = run(uri, Op::Softcap, {{"cap", 30}}, {f32({1, 2}, {1e-3f, -1e-6f})});
    EXPECT_NEAR(got[0], 1e-3 * (1 - 1e-6 / 2700), 1e-3 * 4e-7) << uri;
    EXPECT_NEAR(got[1], -1e-6, 1e-6 * 4e-7) << uri;
  }
}

TEST(NewOpsMeaning, SigmoidGateScalesEachRowByItsGate) {
  const float g[] = {-100, 0, 100, 2};
  std::vector<float> x;
  std::vector<LD> want;
  for (int t = 0; t < 4; ++t) {
    const LD s = 1 / (1 + std::exp(-LD(g[t])));
    for (int i = 0; i < 3; ++i) {
      x.push_back(float(t + 1) * (i == 1 ? -1.0f : 1.0f));
      want.push_back(LD(x.back()) * s);
    }
  }
  expect_op(Op::SigmoidGate, {}, {f32({4, 3}, x), f32({4, 1}, {g[0], g[1], g[2], g[3]})}, want);
  // Large |g| gives no NaN: 0 (or a tiny number) and x itself.
  for (const char* uri : kBackends) {
    std::vector<float> got =
        run(uri, Op::SigmoidGate, {}, {f32({2, 1}, {5, 5}), f32({2, 1}, {-1000, 1000})});
    EXPECT_EQ(got[0], 0.0f) << uri;
    EXPECT_EQ(got[1], 5.0f) << uri;
  }
}

TEST(NewOpsMeaning, MoeRouteChoosesTheLargestAndTheLowerIndexOnTies) {
  // Row 0: the two 3s are chosen. Row 1: three 3s for two places, experts 0 and 2 win.
  // Row 2: all equal, k = 1: expert 0.
  const std::vector<float> l = {1, 3, 3, 2, 3, 1, 3, 3, 0.5f, 0.5f, 0.5f, 0.5f};
  auto p = [&](int t, int e) {
    LD sum = 0;
    for (int i = 0; i < 4; ++i) sum += std::exp(LD(l[size_t(t * 4 + i)]));
    return std::exp(LD(l[size_t(t * 4 + e)])) / sum;
  };
  for (int norm : {0, 1}) {
    SCOPED_TRACE(norm);
    const Tensor logits = f32({3, 4}, l);
    // k = 2 for rows 0 and 1; each is its own call so that row 2 can have k = 1.
    std::vector<LD> want01 = {0, p(0, 1), p(0, 2), 0, p(1, 0), 0, p(1, 2), 0};
    if (norm) {
      for (int i = 0; i < 4; ++i) want01[size_t(i)] /= p(0, 1) + p(0, 2);
      for (int i = 4; i < 8; ++i) want01[size_t(i)] /= p(1, 0) + p(1, 2);
    }
    expect_op(Op::MoeRoute, {{"k", 2}, {"norm", double(norm)}},
              {f32({2, 4}, std::vector<float>(l.begin(), l.begin() + 8))}, want01);
    expect_op(Op::MoeRoute, {{"k", 1}, {"norm", double(norm)}},
              {f32({1, 4}, std::vector<float>(l.begin() + 8, l.end()))},
              {norm ? 1.0L : 0.25L, 0, 0, 0});
    // Unchosen experts are exactly 0, whatever their p.
    for (const char* uri : kBackends) {
      std::vector<float> got = run(uri, Op::MoeRoute, {{"k", 2}, {"norm", double(norm)}}, {logits});
      EXPECT_EQ(got[0], 0.0f) << uri;
      EXPECT_EQ(got[5], 0.0f) << uri;
      EXPECT_EQ(got[7], 0.0f) << uri;
      EXPECT_EQ(got[11], 0.0f) << uri;
    }
  }
  // k = E: norm 1 is the softmax itself.
  expect_op(Op::MoeRoute, {{"k", 4}, {"norm", 1}}, {f32({1, 4}, {1, 3, 3, 2})},
            {p(0, 0), p(0, 1), p(0, 2), p(0, 3)});
}

TEST(NewOpsMeaning, MoeFfnMixesTheChosenExperts) {
  // D = 2, H = 3, E = 3; token 0 routes to experts 0 and 2, token 1 to expert 1 only.
  const int64_t T = 2, D = 2, H = 3, E = 3;
  std::vector<float> x = {0.5f, -1, 2, 0.25f};
  std::vector<float> route = {0.7f, 0, 0.3f, 0, 1, 0};
  std::vector<float> gate(E * H * D), up(E * H * D), down(E * D * H);
  for (size_t i = 0; i < gate.size(); ++i) {
    gate[i] = 0.1f * float(int(i % 7) - 3);
    up[i] = 0.05f * float(int(i % 5) - 2) + 0.01f;
    down[i] = 0.2f * float(int(i % 3) - 1) + 0.03f * float(i);
  }
  std::vector<LD> want(T * D, 0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = 0; e < E; ++e) {
      const LD r = route[size_t(t * E + e)];
      if (r == 0) continue;
      LD a[3];
      for (int64_t h = 0; h < H; ++h) {
        LD g = 0, u = 0;
        for (int64_t d = 0; d < D; ++d) {
          g += LD(gate[size_t((e * H + h) * D + d)]) * x[size_t(t * D + d)];
          u += LD(up[size_t((e * H + h) * D + d)]) * x[size_t(t * D + d)];
        }
        a[h] = g / (1 + std::exp(-g)) * u;
      }
      for (int64_t d = 0; d < D; ++d) {
        LD s = 0;
        for (int64_t h = 0; h < H; ++h) s += LD(down[size_t((e * D + d) * H + h)]) * a[h];
        want[size_t(t * D + d)] += r * s;
      }
    }
  auto inputs = [&](DType w) {
    auto weights = [&](Shape s, const std::vector<float>& v) {
      Tensor t = f32(std::move(s), v);
      if (w == DType::F32) return t;
      Tensor h(w, t.shape());
      for (int64_t i = 0; i < t.numel(); ++i)
        h.mutable_data<uint16_t>()[i] =
            w == DType::F16 ? f32_to_f16(v[size_t(i)]) : f32_to_bf16(v[size_t(i)]);
      return h;
    };
    return std::vector<Tensor>{f32({T, D}, x), f32({T, E}, route), weights({E, H, D}, gate),
                               weights({E, H, D}, up), weights({E, D, H}, down)};
  };
  expect_op(Op::MoeFfn, {}, inputs(DType::F32), want);
  // 16-bit weights: the same up to their rounding.
  expect_op(Op::MoeFfn, {}, inputs(DType::F16), want, 2e-3);
  expect_op(Op::MoeFfn, {}, inputs(DType::BF16), want, 2e-2);
  // An expert with route 0 is not computed: NaN and inf in its weights change nothing.
  std::vector<Tensor> poisoned = inputs(DType::F32);
  poisoned[1] = f32({T, E}, {0.7f, 0, 0, 0, 1, 0});  // expert 2 chosen by none
  for (size_t i = 2; i < 5; ++i) {
    float* p = poisoned[i].mutable_data<float>();
    for (int64_t j = 2 * H * D; j < 3 * H * D; ++j) p[j] = (j % 2) ? NAN : INFINITY;
  }
  for (const char* uri : kBackends) {
    std::vector<float> got = run(uri, Op::MoeFfn, {}, poisoned);
    for (float v : got) EXPECT_TRUE(std::isfinite(v)) << uri;
  }
}

// q = 0 makes every score 0: a row's output is the mean of the values it can see, v_j = j.
std::vector<float> attend(const char* uri, int64_t T, int64_t P, Attrs extra) {
  Attrs a{{"n_heads", 1}, {"n_kv_heads", 1}, {"head_dim", 1}, {"scale", 1}};
  for (auto& [k, v] : extra.items()) a.set(k, v);
  std::vector<float> v(static_cast<size_t>(P));
  for (int64_t j = 0; j < P; ++j) v[size_t(j)] = float(j);
  return run(uri, Op::Attention, a,
             {f32({T, 1}, std::vector<float>(size_t(T), 0.0f)),
              f32({P, 1}, std::vector<float>(size_t(P), 1.0f)), f32({P, 1}, v)});
}

TEST(NewOpsMeaning, AttentionWindowSeesKeysWithinWindowMinusOne) {
  for (const char* uri : kBackends) {
    SCOPED_TRACE(uri);
    // Decode at position 5, window 3: keys 3, 4, 5 (i - j = 2 = window - 1 is in; key 2,
    // i - j = 3 = window, is out).
    EXPECT_FLOAT_EQ(attend(uri, 1, 6, {{"window", 3}})[0], 4.0f);
    EXPECT_FLOAT_EQ(attend(uri, 1, 6, {{"window", 4}})[0], 3.5f);
    EXPECT_FLOAT_EQ(attend(uri, 1, 6, {})[0], 2.5f);
    EXPECT_FLOAT_EQ(attend(uri, 1, 6, {{"window", 0}})[0], 2.5f);
    EXPECT_FLOAT_EQ(attend(uri, 1, 6, {{"window", 6}})[0], 2.5f);
    EXPECT_FLOAT_EQ(attend(uri, 1, 6, {{"window", 100}})[0], 2.5f);
    // Prefill of all 6 rows, window 3: row t sees max(0, t - 2) .. t.
    std::vector<float> rows = attend(uri, 6, 6, {{"window", 3}});
    const float want[] = {0, 0.5f, 1, 2, 3, 4};
    for (int t = 0; t < 6; ++t) EXPECT_FLOAT_EQ(rows[size_t(t)], want[t]) << t;
    // Window 1: each row sees itself. Two rows after 4 cached: positions 4 and 5.
    std::vector<float> self = attend(uri, 2, 6, {{"window", 1}});
    EXPECT_EQ(self[0], 4.0f);
    EXPECT_EQ(self[1], 5.0f);
  }
}

TEST(NewOpsMeaning, AttentionSoftcapCapsTheScaledScores) {
  // One query, two keys: scores s0 = 0 and s1 = scale * q.k; out = the weight of key 1.
  for (const char* uri : kBackends) {
    SCOPED_TRACE(uri);
    auto weight1 = [&](float qk, double scale, double cap) {
      Attrs a{{"n_heads", 1}, {"n_kv_heads", 1}, {"head_dim", 1}, {"scale", scale}};
      if (cap > 0) a.set("softcap", cap);
      return run(uri, Op::Attention, a,
                 {f32({1, 1}, {1}), f32({2, 1}, {0, qk}), f32({2, 1}, {0, 1})})[0];
    };
    auto logistic = [](LD s) { return double(1 / (1 + std::exp(-s))); };
    // Scaled score 2 * 60 = 120, capped to 10 tanh(12) = 9.99999...: weight e^s / (1 + e^s).
    EXPECT_NEAR(weight1(60, 2, 10), logistic(10 * std::tanh(12.0L)), 1e-6);
    EXPECT_NEAR(weight1(60, 2, 0), 1.0, 1e-6);  // uncapped: one-hot
    // A small score is nearly unchanged: 0.5 -> 50 tanh(0.01).
    EXPECT_NEAR(weight1(0.5f, 1, 50), logistic(50 * std::tanh(0.01L)), 1e-7);
    // Negative scores are capped from below; the cap applies before the causal mask and
    // the softmax (the max subtraction must see the capped scores).
    EXPECT_NEAR(weight1(-300, 1, 5), logistic(5 * std::tanh(-60.0L)), 1e-7);
  }
}

TEST(NewOpsMeaning, RopeFreqFactorsDivideTheFrequencies) {
  // One head of 4 dims, adjacent pairs, base 100: freq_0 = 1, freq_1 = 100^(-1/2) = 0.1.
  // Factors 2 and 0.5 make them 0.5 and 0.2; at position 3 the angles are 1.5 and 0.6.
  Attrs a{{"n_heads", 1}, {"head_dim", 4}, {"rope_dim", 4}, {"base", 100}, {"pairing", 0}};
  const std::vector<float> x = {1, 0, 0.5f, -2};
  auto rotated = [&](LD th0, LD th1) {
    return std::vector<LD>{std::cos(th0), std::sin(th0), 0.5L * std::cos(th1) + 2 * std::sin(th1),
                           0.5L * std::sin(th1) - 2 * std::cos(th1)};
  };
  const Tensor pos = Tensor::from_i32({1}, std::vector<int32_t>{3});
  expect_op(Op::Rope, a, {f32({1, 4}, x), pos, f32({2}, {2, 0.5f})}, rotated(1.5L, 0.6L));
  expect_op(Op::Rope, a, {f32({1, 4}, x), pos}, rotated(3, 0.3L));
  expect_op(Op::Rope, a, {f32({1, 4}, x), pos, f32({2}, {1, 1})}, rotated(3, 0.3L));
}

}  // namespace
}  // namespace tapml

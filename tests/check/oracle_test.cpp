#include "check/oracle.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "core/error.h"
#include "ops/op.h"
#include "support/errors.h"

namespace tapml {
namespace {

using ::tapml::testing::contains;
using ::tapml::testing::error_of;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

Tensor f32(Shape s, std::vector<float> v) { return Tensor::from_f32(std::move(s), v); }

Verdict judge_one(Op op, int64_t k, const Tensor& expected, const Tensor& actual, double noise = -1,
                  bool guard = true) {
  TolerancePolicy policy;
  std::vector<Tensor> e{expected}, a{actual};
  std::vector<double> n{noise};
  return judge(policy, op, k, e, a, {guard}, n);
}

// ----------------------------------------------------------------------------- measure()

TEST(Measure, MetricsOfHandMadeTensors) {
  Tensor e = f32({2, 2}, {1, -2, 4, 0});
  Tensor a = f32({2, 2}, {1.5f, -2, 3, 0.125f});
  ErrorMetrics m = measure(e, a, 0.1);  // out of tolerance: |a - e| > 0.1 * 4
  EXPECT_EQ(m.elements, 4);
  EXPECT_DOUBLE_EQ(m.scale, 4);
  EXPECT_DOUBLE_EQ(m.max_abs, 1);
  EXPECT_EQ(m.worst_index, 2);
  EXPECT_DOUBLE_EQ(m.error, 0.25);
  EXPECT_DOUBLE_EQ(m.max_rel, 0.5);  // element 3 has e = 0 and is left out of max_rel
  EXPECT_DOUBLE_EQ(m.nmse, (0.25 + 1 + 0.125 * 0.125) / 21);
  const double dot = 1.5 + 4 + 12, na = std::sqrt(1.5 * 1.5 + 4 + 9 + 0.125 * 0.125);
  EXPECT_NEAR(m.cosine, dot / (na * std::sqrt(21.0)), 1e-15);
  EXPECT_DOUBLE_EQ(m.frac_out, 0.5);
  EXPECT_EQ(m.nan + m.pos_inf + m.neg_inf, 0);

  ErrorMetrics same = measure(e, e, 0);
  EXPECT_EQ(same.error, 0);
  EXPECT_EQ(same.nmse, 0);
  EXPECT_EQ(same.cosine, 1);
  EXPECT_EQ(same.frac_out, 0);
}

TEST(Measure, CountsNanAndInfWithSign) {
  Tensor e = f32({6}, {1, 2, 3, 4, 5, 6});
  Tensor a = f32({6}, {kNaN, kInf, -kInf, -kInf, 5.5f, 6});
  ErrorMetrics m = measure(e, a, 1);
  EXPECT_EQ(m.nan, 1);
  EXPECT_EQ(m.first_nan, 0);
  EXPECT_EQ(m.pos_inf, 1);
  EXPECT_EQ(m.neg_inf, 2);
  EXPECT_EQ(m.first_inf, 1);
  // The numeric metrics cover the finite pairs; every non-finite element is out.
  EXPECT_DOUBLE_EQ(m.max_abs, 0.5);
  EXPECT_DOUBLE_EQ(m.frac_out, 4.0 / 6);
}

TEST(Measure, SpecialValuesOfTheSourceMustBeReproduced) {
  Tensor e = f32({4}, {kNaN, kInf, -kInf, 1});
  EXPECT_EQ(measure(e, f32({4}, {kNaN, kInf, -kInf, 1}), 0).mismatched_special, 0);
  ErrorMetrics m = measure(e, f32({4}, {0, kInf, kInf, 1}), 0);
  EXPECT_EQ(m.mismatched_special, 2);
  EXPECT_EQ(m.first_special, 0);
  EXPECT_EQ(m.nan + m.pos_inf + m.neg_inf, 0);  // counted only where the source is finite
  EXPECT_EQ(m.scale, 1);                        // S ignores the source's specials
}

TEST(Measure, AllZeroExpectedStillShowsAnyDifference) {
  Tensor zero = f32({3}, {0, 0, 0});
  EXPECT_EQ(measure(zero, zero, 0).error, 0);
  ErrorMetrics m = measure(zero, f32({3}, {0, 1e-20f, 0}), 1e-3);
  EXPECT_GT(m.error, 1e9);
  EXPECT_EQ(m.cosine, 0);
  EXPECT_DOUBLE_EQ(m.frac_out, 1.0 / 3);
}

TEST(Measure, IntegersAndShapeMismatch) {
  Tensor e = Tensor::from_i32({3}, std::vector<int32_t>{1, 2, 3});
  ErrorMetrics m = measure(e, Tensor::from_i32({3}, std::vector<int32_t>{1, 2, 5}), 0);
  EXPECT_DOUBLE_EQ(m.max_abs, 2);
  EXPECT_EQ(m.worst_index, 2);
  EXPECT_TRUE(contains(error_of([&] { measure(e, f32({1, 3}, {1, 2, 3}), 0); }), "shapes differ"));
}

// ----------------------------------------------------------------------------- check order

TEST(Judge, NanBeatsALargeError) {
  Verdict v = judge_one(Op::Add, 1, f32({3}, {1, 2, 3}), f32({3}, {100, kNaN, 3}));
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.failed, CheckKind::NaN);
  EXPECT_TRUE(contains(v.detail, "output 0 (out): 1 NaN of 3 elements, first at [1]"));
  EXPECT_TRUE(std::isinf(v.worst_ratio));
}

TEST(Judge, GuardBeatsNan) {
  Verdict v = judge_one(Op::Add, 1, f32({2}, {1, 2}), f32({2}, {kNaN, 2}), -1, false);
  EXPECT_EQ(v.failed, CheckKind::Guard);
  EXPECT_TRUE(contains(v.detail, "output 0 (out): bytes outside the tensor were written"));
}

TEST(Judge, DtypeAndShapeBeatEverything) {
  Verdict shape = judge_one(Op::Add, 1, f32({2}, {1, 2}), f32({1, 2}, {kNaN, 2}), -1, false);
  EXPECT_EQ(shape.failed, CheckKind::Shape);
  EXPECT_TRUE(contains(shape.detail, "shape [1, 2], expected [2]"));
  Tensor i32 = Tensor::from_i32({1, 2}, std::vector<int32_t>{1, 2});
  Verdict dtype = judge_one(Op::Add, 1, f32({2}, {1, 2}), i32, -1, false);
  EXPECT_EQ(dtype.failed, CheckKind::Dtype);
  EXPECT_TRUE(contains(dtype.detail, "dtype i32, expected f32"));
}

TEST(Judge, InfIsReportedWithItsSign) {
  Verdict v = judge_one(Op::Add, 1, f32({4}, {1, 2, 3, 4}), f32({4}, {1, -kInf, kInf, -kInf}));
  EXPECT_EQ(v.failed, CheckKind::Inf);
  EXPECT_TRUE(contains(v.detail, "1 +Inf and 2 -Inf of 4 elements, first at [1]"));
}

TEST(Judge, NeverWrittenElementsAreNamed) {
  Tensor poisoned = f32({2}, {1, 0});
  const uint32_t poison = 0x7FC0DEAD;
  std::memcpy(poisoned.mutable_bytes() + 4, &poison, 4);
  Verdict v = judge_one(Op::Add, 1, f32({2}, {1, 2}), poisoned);
  EXPECT_EQ(v.failed, CheckKind::NaN);
  EXPECT_TRUE(contains(v.detail, "never written"));
}

TEST(Judge, SourceSpecialsMustMatchExactly) {
  Tensor e = f32({3}, {kNaN, kInf, 1});
  EXPECT_TRUE(judge_one(Op::Add, 1, e, f32({3}, {kNaN, kInf, 1})).pass);
  EXPECT_EQ(judge_one(Op::Add, 1, e, f32({3}, {0, kInf, 1})).failed, CheckKind::NaN);
  EXPECT_EQ(judge_one(Op::Add, 1, e, f32({3}, {kNaN, 5, 1})).failed, CheckKind::Inf);
}

TEST(Judge, NumericDetailSaysHowFarFromToleranceAndNoise) {
  Tensor e = f32({2, 2}, {1, 2, 3, 4});
  Verdict v = judge_one(Op::Add, 1, e, f32({2, 2}, {1, 2, 3.01f, 4}), 1e-8);
  EXPECT_EQ(v.failed, CheckKind::Numeric);
  const OutputVerdict& o = v.outputs[0];
  EXPECT_NEAR(o.metrics.error, 0.0025, 1e-6);
  EXPECT_NEAR(o.ratio, o.metrics.error / o.tolerance, 1e-12);
  EXPECT_NEAR(o.noise_multiple, o.metrics.error / 1e-8, 1e-2);
  EXPECT_TRUE(contains(v.detail,
                       "output 0 (out): E 2.5e-3 = 2500x tolerance 1.0e-6 "
                       "(noise floor 1.0e-8: 250000x noise); max abs 1.0e-2 at [1, 0]"));
  EXPECT_TRUE(contains(v.detail, "25% of elements out"));
}

TEST(Judge, PassRecordsHowCloseItCame) {
  Tensor e = f32({2}, {1, 2});
  Tensor a = f32({2}, {1, std::nextafter(2.0f, 3.0f)});
  Verdict v = judge_one(Op::Matmul, 64, e, a, 1e-7);
  EXPECT_TRUE(v.pass);
  EXPECT_EQ(v.failed, CheckKind::Pass);
  EXPECT_GT(v.worst_ratio, 0);
  EXPECT_LT(v.worst_ratio, 1);
  EXPECT_TRUE(contains(v.detail, "x tolerance"));
}

// ----------------------------------------------------------------------------- exactness

TEST(Judge, IntegerOutputsCompareExactly) {
  TolerancePolicy policy;
  EXPECT_EQ(policy.tolerance(Op::Matmul, DType::I32, 64, 1e-3), 0);
  Tensor e = Tensor::from_i32({3}, std::vector<int32_t>{7, 8, 9});
  Verdict same = judge_one(Op::Matmul, 64, e, e, 1e-3);
  EXPECT_TRUE(same.pass);
  EXPECT_EQ(same.worst_ratio, 0);
  Verdict v = judge_one(Op::Matmul, 64, e, Tensor::from_i32({3}, std::vector<int32_t>{7, 8, 10}));
  EXPECT_EQ(v.failed, CheckKind::Exact);
  EXPECT_TRUE(contains(v.detail, "1 of 3 elements differ, first at [2]: expected 9"));
}

TEST(Judge, CopiesMustBeBitExact) {
  TolerancePolicy policy;
  EXPECT_EQ(policy.tolerance(Op::KvStore, DType::F32, 1, 1e-3), 0);
  EXPECT_EQ(policy.tolerance(Op::Embedding, DType::F32, 1, -1), 0);
  Tensor e = f32({2, 2}, {0.5f, 0, 1, 2});
  EXPECT_TRUE(judge_one(Op::Embedding, 1, e, e).pass);
  // One ulp, or the sign of a zero, is a failed copy.
  Tensor ulp = f32({2, 2}, {std::nextafter(0.5f, 1.0f), 0, 1, 2});
  Verdict v = judge_one(Op::Embedding, 1, e, ulp);
  EXPECT_EQ(v.failed, CheckKind::Exact);
  EXPECT_TRUE(contains(v.detail,
                       "not bit-exact (a copy must be): 1 of 4 elements differ, "
                       "first at [0, 0]: expected 0.5 (0x3f000000), got 0.50000006 (0x3f000001)"));
  EXPECT_EQ(judge_one(Op::Embedding, 1, e, f32({2, 2}, {0.5f, -0.0f, 1, 2})).failed,
            CheckKind::Exact);
}

TEST(Judge, KvCacheStoredOneRowOffIsPinnedDown) {
  // The cache after storing rows k0, k1 at pos 2 of a 6-row cache; the bug stores at pos 3.
  std::vector<float> before(6 * 4, 0.f), k(2 * 4);
  for (size_t i = 0; i < k.size(); ++i) k[i] = float(i + 1);
  std::vector<float> good = before, bad = before;
  std::copy(k.begin(), k.end(), good.begin() + 2 * 4);
  std::copy(k.begin(), k.end(), bad.begin() + 3 * 4);
  std::vector<Tensor> e{f32({6, 4}, good), f32({6, 4}, good)};
  std::vector<Tensor> a{f32({6, 4}, good), f32({6, 4}, bad)};
  TolerancePolicy policy;
  Verdict v = judge(policy, Op::KvStore, 1, e, a, {true, true}, std::vector<double>{0, 0});
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.outputs[0].failed, CheckKind::Pass);
  EXPECT_EQ(v.failed, CheckKind::Exact);
  EXPECT_TRUE(contains(v.detail,
                       "output 1 (v_cache): not bit-exact (a copy must be): 12 of 24 elements "
                       "differ, first at [2, 0]: expected 1 (0x3f800000), got 0 (0x00000000); "
                       "3 of 6 rows differ (rows 2..4); expected row 2 was found at row 3"));
  // Stored one row early: the first differing row (1) should hold zeros like rows 0 and 5,
  // so its expected contents name no place; where its actual contents came from does.
  std::vector<float> early = before;
  std::copy(k.begin(), k.end(), early.begin() + 1 * 4);
  std::vector<Tensor> b{f32({6, 4}, early), f32({6, 4}, good)};
  Verdict w = judge(policy, Op::KvStore, 1, e, b, {true, true}, std::vector<double>{0, 0});
  EXPECT_TRUE(contains(w.detail, "output 0 (k_cache)"));
  EXPECT_TRUE(contains(w.detail, "rows 1..3); row 1 holds expected row 2")) << w.detail;
}

// ----------------------------------------------------------------------------- tolerance

TEST(Tolerance, GrowsWithReductionLengthAndNoise) {
  TolerancePolicy p;
  double last = 0;
  for (int64_t k : {1, 64, 172, 1024, 4096, 11008, 1 << 20}) {
    double t = p.tolerance(Op::Matmul, DType::F32, k, -1);
    EXPECT_GE(t, last) << k;
    last = t;
  }
  EXPECT_NEAR(p.tolerance(Op::Matmul, DType::F32, 1 << 20, -1),
              TolerancePolicy::factor(Op::Matmul) * 1024 * std::ldexp(1.0, -24), 1e-15);
  // The noise term wins once noise_multiple * noise exceeds the floor, and grows with it.
  const double floor = p.floor(Op::Matmul, DType::F32, 4096);
  EXPECT_EQ(p.tolerance(Op::Matmul, DType::F32, 4096, 0), floor);
  EXPECT_EQ(p.tolerance(Op::Matmul, DType::F32, 4096, floor / 100), floor);
  EXPECT_DOUBLE_EQ(p.tolerance(Op::Matmul, DType::F32, 4096, floor), p.noise_multiple * floor);
  EXPECT_LT(p.tolerance(Op::Matmul, DType::F32, 4096, floor),
            p.tolerance(Op::Matmul, DType::F32, 4096, 2 * floor));
  // A broken calibration does not loosen anything.
  EXPECT_EQ(p.tolerance(Op::Matmul, DType::F32, 4096, std::numeric_limits<double>::infinity()),
            floor);
  // Half-precision outputs would scale with their own unit roundoff.
  EXPECT_GT(p.tolerance(Op::Matmul, DType::F16, 64, -1),
            1000 * p.tolerance(Op::Matmul, DType::F32, 64, -1));
}

TEST(Tolerance, OnlyCopiesAreExactAndArithmeticHasAFloor) {
  TolerancePolicy p;
  for (const OpDef& d : all_ops()) {
    double t = p.tolerance(d.op, DType::F32, 1, 0);  // a noise floor of 0 is common
    if (d.op == Op::Embedding || d.op == Op::KvStore) {
      EXPECT_EQ(t, 0) << d.name;
    } else {
      EXPECT_GE(t, p.min_tolerance) << d.name;
      EXPECT_GT(d.tolerance.factor, 0) << d.name;
      EXPECT_GE(d.tolerance.uncalibrated_factor, d.tolerance.factor) << d.name;
    }
  }
}

TEST(Tolerance, RopeUncalibratedCoversLargePositions) {
  TolerancePolicy p;
  EXPECT_GT(p.tolerance(Op::Rope, DType::F32, 1, -1), 30 * p.tolerance(Op::Rope, DType::F32, 1, 0));
}

TEST(Judge, WorstRatioSpansOutputsAndSizesAreChecked) {
  TolerancePolicy policy;
  Tensor e = f32({2}, {1, 2});
  Tensor off = f32({2}, {1, 2.000001f});  // ~half the min tolerance
  std::vector<Tensor> es{e, e}, as{e, off};
  Verdict v = judge(policy, Op::KvStore, 1, es, as, {}, {});
  EXPECT_FALSE(v.pass);
  EXPECT_TRUE(std::isinf(v.worst_ratio));
  EXPECT_EQ(v.outputs.size(), 2u);
  std::vector<Tensor> one{e};
  Verdict missing = judge(policy, Op::KvStore, 1, es, one, {}, {});
  EXPECT_EQ(missing.failed, CheckKind::Shape);
  EXPECT_TRUE(contains(missing.detail, "output 1 (v_cache): missing"));
  EXPECT_TRUE(contains(error_of([&] {
                         judge(policy, Op::Add, 1, one, one, {true, true}, {});
                       }),
                       "2 guard flags for 1 outputs"));
  std::vector<double> noise{1, 2};
  EXPECT_TRUE(contains(error_of([&] { judge(policy, Op::Add, 1, one, one, {}, noise); }),
                       "2 noise floors for 1 outputs"));
}

// ----------------------------------------------------------------------------- simulation
// Seeded stand-ins for the real pipeline: "expected" is the op in f64 (as ref computes it),
// the noise is a plain sequential f32 computation against it (as carving measures it), a
// correct target is f32 in another order or formulation, and a buggy target carries one of
// the faults a real kernel has shipped with.

struct Data {
  std::mt19937_64 rng{2024};
  float gauss(double sd = 1) { return float(std::normal_distribution<double>(0, sd)(rng)); }
  std::vector<float> normal(size_t n, double sd = 1) {
    std::vector<float> v(n);
    for (float& x : v) x = gauss(sd);
    return v;
  }
};

double noise_of(const Tensor& expected, const Tensor& f32_result) {
  return measure(expected, f32_result, 1).error;
}

enum class Order { Sequential, Interleaved8, Pairwise };

float sum_sequential(const float* a, const float* b, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

float sum_pairwise(const float* a, const float* b, int64_t n) {
  if (n <= 8) return sum_sequential(a, b, n);
  const int64_t h = n / 2;
  return sum_pairwise(a, b, h) + sum_pairwise(a + h, b + h, n - h);
}

// Eight FMA accumulators (a SIMD kernel's lanes), then the tail.
float sum_interleaved8(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  const int64_t whole = n / 8 * 8;
  for (int64_t i = 0; i < whole; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] = std::fma(a[i + j], b[i + j], acc[j]);
  float s = 0;
  for (float x : acc) s += x;
  return s + sum_sequential(a + whole, b + whole, n - whole);
}

float sum_products(const float* a, const float* b, int64_t n, Order o) {
  switch (o) {
    case Order::Interleaved8:
      return sum_interleaved8(a, b, n);
    case Order::Pairwise:
      return sum_pairwise(a, b, n);
    case Order::Sequential:
      break;
  }
  return sum_sequential(a, b, n);
}

double sum_products_f64(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(a[i]) * b[i];
  return s;
}

// matmul: f64 when `order` is empty; `drop` products at the end of every dot are lost.
Tensor matmul(const std::vector<float>& x, const std::vector<float>& w, int64_t T, int64_t K,
              int64_t N, std::optional<Order> order, int64_t drop = 0) {
  std::vector<float> out(size_t(T * N));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      const float *xr = &x[size_t(t * K)], *wr = &w[size_t(n * K)];
      out[size_t(t * N + n)] =
          order ? sum_products(xr, wr, K - drop, *order) : float(sum_products_f64(xr, wr, K));
    }
  return f32({T, N}, out);
}

TEST(Simulation, MatmulOrderPassesDroppedTailFails) {
  Data d;
  for (int64_t K : {64, 172, 4096}) {
    const int64_t T = 4, N = 64;
    std::vector<float> x = d.normal(size_t(T * K)), w = d.normal(size_t(N * K), 0.05);
    for (int64_t t = 0; t < T; ++t) x[size_t(t * K + 5)] *= 40;  // an outlier channel
    Tensor ref = matmul(x, w, T, K, N, std::nullopt);
    double noise = noise_of(ref, matmul(x, w, T, K, N, Order::Sequential));
    for (Order o : {Order::Interleaved8, Order::Pairwise}) {
      Verdict v = judge_one(Op::Matmul, K, ref, matmul(x, w, T, K, N, o), noise);
      EXPECT_TRUE(v.pass) << K << ": " << v.detail;
      EXPECT_LT(v.worst_ratio, 0.5) << K;
      EXPECT_TRUE(judge_one(Op::Matmul, K, ref, matmul(x, w, T, K, N, o)).pass) << "uncalibrated";
    }
    if (K % 8) {
      Verdict v =
          judge_one(Op::Matmul, K, ref, matmul(x, w, T, K, N, Order::Interleaved8, K % 8), noise);
      EXPECT_EQ(v.failed, CheckKind::Numeric) << K;
      EXPECT_GT(v.worst_ratio, 50) << K;
    }
  }
}

Tensor rmsnorm(const std::vector<float>& x, const std::vector<float>& w, int64_t T, int64_t D,
               double eps, std::optional<Order> order) {
  std::vector<float> out(x.size());
  for (int64_t t = 0; t < T; ++t) {
    const float* r = &x[size_t(t * D)];
    if (!order) {
      double inv = 1 / std::sqrt(sum_products_f64(r, r, D) / double(D) + eps);
      for (int64_t i = 0; i < D; ++i) out[size_t(t * D + i)] = float(r[i] * inv * w[size_t(i)]);
    } else {
      float inv = 1.0f / std::sqrt(sum_products(r, r, D, *order) / float(D) + float(eps));
      for (int64_t i = 0; i < D; ++i) out[size_t(t * D + i)] = r[i] * inv * w[size_t(i)];
    }
  }
  return f32({T, D}, out);
}

TEST(Simulation, RmsnormOrderPassesIgnoredEpsFails) {
  Data d;
  for (int64_t D : {64, 4096}) {
    // Rows with mean squares 1, 0.01 and 100 (the residual stream's range).
    const int64_t T = 3;
    std::vector<float> x, w = d.normal(size_t(D), 0.2);
    for (float& v : w) v += 1;
    for (double sd : {1.0, 0.1, 10.0})
      for (int64_t i = 0; i < D; ++i) x.push_back(d.gauss(sd));
    Tensor ref = rmsnorm(x, w, T, D, 1e-5, std::nullopt);
    double noise = noise_of(ref, rmsnorm(x, w, T, D, 1e-5, Order::Sequential));
    for (Order o : {Order::Interleaved8, Order::Pairwise}) {
      Verdict v = judge_one(Op::RmsNorm, D, ref, rmsnorm(x, w, T, D, 1e-5, o), noise);
      EXPECT_TRUE(v.pass) << D << ": " << v.detail;
      EXPECT_LT(v.worst_ratio, 0.5) << D;
    }
    Verdict v = judge_one(Op::RmsNorm, D, ref, rmsnorm(x, w, T, D, 0, Order::Pairwise), noise);
    EXPECT_EQ(v.failed, CheckKind::Numeric) << D;
    EXPECT_GT(v.worst_ratio, 5) << D;
  }
  // At D = 64 even a row with mean square 1 shows the missing eps (relative error 5e-6).
  std::vector<float> x = d.normal(64), w(64, 1.0f);
  Tensor ref = rmsnorm(x, w, 1, 64, 1e-5, std::nullopt);
  double noise = noise_of(ref, rmsnorm(x, w, 1, 64, 1e-5, Order::Sequential));
  EXPECT_FALSE(
      judge_one(Op::RmsNorm, 64, ref, rmsnorm(x, w, 1, 64, 0, Order::Pairwise), noise).pass);
}

// Causal grouped-query attention as the catalog defines it: in f64 (the source), in plain
// f32 (the noise run), flash-style online softmax (a correct target), and with the faults
// kernels have shipped with.
enum class Attn { F64, Sequential, Online, F16Scores, NoMaxSubtraction, F16Softmax, GqaModulo };

struct AttnCase {
  int64_t T, P, H, KV, hd;
  float scale;
  std::vector<float> q, k, v;
};

Tensor attention(const AttnCase& c, Attn kind) {
  const int64_t qw = c.H * c.hd, kw = c.KV * c.hd, group = c.H / c.KV;
  std::vector<float> out(size_t(c.T * qw));
  std::vector<double> s(size_t(c.P));
  auto f16 = [](double v) { return double(f16_to_f32(f32_to_f16(float(v)))); };
  for (int64_t t = 0; t < c.T; ++t)
    for (int64_t h = 0; h < c.H; ++h) {
      const int64_t n = c.P - c.T + t + 1, kh = kind == Attn::GqaModulo ? h % c.KV : h / group;
      const float* q = &c.q[size_t(t * qw + h * c.hd)];
      auto key = [&](int64_t j) { return &c.k[size_t(j * kw + kh * c.hd)]; };
      auto val = [&](int64_t j, int64_t i) { return c.v[size_t(j * kw + kh * c.hd + i)]; };
      float* o = &out[size_t(t * qw + h * c.hd)];
      if (kind == Attn::Online) {  // flash-style: blocks of 16 keys, running max and sum
        float m = -INFINITY, l = 0;
        std::vector<float> acc(size_t(c.hd), 0.0f);
        for (int64_t b = 0; b < n; b += 16) {
          const int64_t e = std::min(n, b + 16);
          float bm = m;
          std::vector<float> sc;
          for (int64_t j = b; j < e; ++j) {
            sc.push_back(sum_products(q, key(j), c.hd, Order::Interleaved8) * c.scale);
            bm = std::max(bm, sc.back());
          }
          const float corr = std::exp(m - bm);
          l *= corr;
          for (float& a : acc) a *= corr;
          for (int64_t j = b; j < e; ++j) {
            const float p = std::exp(sc[size_t(j - b)] - bm);
            l += p;
            for (int64_t i = 0; i < c.hd; ++i)
              acc[size_t(i)] = std::fma(p, val(j, i), acc[size_t(i)]);
          }
          m = bm;
        }
        for (int64_t i = 0; i < c.hd; ++i) o[i] = acc[size_t(i)] / l;
        continue;
      }
      if (kind == Attn::F64 || kind == Attn::GqaModulo) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n; ++j)
          mx = std::max(mx, s[size_t(j)] = sum_products_f64(q, key(j), c.hd) * c.scale);
        for (int64_t j = 0; j < n; ++j) sum += (s[size_t(j)] = std::exp(s[size_t(j)] - mx));
        for (int64_t i = 0; i < c.hd; ++i) {
          double acc = 0;
          for (int64_t j = 0; j < n; ++j) acc += s[size_t(j)] * val(j, i);
          o[i] = float(acc / sum);
        }
        continue;
      }
      // Plain f32 two-pass softmax, and its faulty variants.
      float mx = -INFINITY;
      std::vector<float> p(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) {
        float sc = sum_products(q, key(j), c.hd, Order::Sequential) * c.scale;
        if (kind == Attn::F16Scores || kind == Attn::F16Softmax) sc = float(f16(sc));
        mx = std::max(mx, p[size_t(j)] = sc);
      }
      const bool subtract = kind == Attn::Sequential || kind == Attn::F16Scores;
      float sum = 0;
      for (int64_t j = 0; j < n; ++j) {
        float e = std::exp(p[size_t(j)] - (subtract ? mx : 0.0f));
        if (kind == Attn::F16Softmax) e = float(f16(e));
        sum += e;
        if (kind == Attn::F16Softmax) sum = float(f16(sum));
        p[size_t(j)] = e;
      }
      for (int64_t i = 0; i < c.hd; ++i) {
        float acc = 0;
        for (int64_t j = 0; j < n; ++j) acc += p[size_t(j)] * val(j, i);
        o[i] = acc / sum;
      }
    }
  return f32({c.T, qw}, out);
}

// Realistic scores: q.k * scale spread over about +-10, key 0 an attention sink with score
// `sink` for every query, and one value row with outliers.
AttnCase attention_case(Data& d, int64_t T, int64_t P, int64_t hd, float sink) {
  AttnCase c{T, P, 4, 2, hd, float(1 / std::sqrt(double(hd))), {}, {}, {}};
  c.q = d.normal(size_t(T * c.H * hd), 1.8);
  c.k = d.normal(size_t(P * c.KV * hd), 1.8);
  c.v = d.normal(size_t(P * c.KV * hd));
  for (int64_t i = 0; i < c.KV * hd; i += 5) c.v[size_t((P / 2) * c.KV * hd + i)] *= 20;
  for (int64_t kh = 0; kh < c.KV; ++kh) {
    // Key 0 of each KV head points along the sum of its group's 2T queries, scaled so that
    // q.k0 * scale is about `sink` for each of them.
    std::vector<double> mean(size_t(hd), 0);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = kh * 2; h < kh * 2 + 2; ++h)
        for (int64_t i = 0; i < hd; ++i) mean[size_t(i)] += c.q[size_t(t * c.H * hd + h * hd + i)];
    double norm2 = 0;
    for (double m : mean) norm2 += m * m;
    for (int64_t i = 0; i < hd; ++i)
      c.k[size_t(kh * hd + i)] = float(mean[size_t(i)] / norm2 * sink / c.scale * double(T * 2));
  }
  return c;
}

TEST(Simulation, AttentionOrderPassesSoftmaxFaultsFail) {
  Data d;
  for (int64_t hd : {8, 64})
    for (int64_t P : {5, 80}) {
      AttnCase c = attention_case(d, 4, P, hd, 25);
      Tensor ref = attention(c, Attn::F64);
      const int64_t K = P * hd;
      double noise = noise_of(ref, attention(c, Attn::Sequential));
      Verdict ok = judge_one(Op::Attention, K, ref, attention(c, Attn::Online), noise);
      EXPECT_TRUE(ok.pass) << hd << " " << P << ": " << ok.detail;
      EXPECT_LT(ok.worst_ratio, 0.5);
      EXPECT_TRUE(judge_one(Op::Attention, K, ref, attention(c, Attn::Online)).pass);

      Verdict f16 = judge_one(Op::Attention, K, ref, attention(c, Attn::F16Scores), noise);
      EXPECT_EQ(f16.failed, CheckKind::Numeric) << hd << " " << P << ": " << f16.detail;
      EXPECT_GT(f16.worst_ratio, 2) << hd << " " << P;
      Verdict gqa = judge_one(Op::Attention, K, ref, attention(c, Attn::GqaModulo), noise);
      EXPECT_EQ(gqa.failed, CheckKind::Numeric);
      EXPECT_GT(gqa.worst_ratio, 1000);
      // exp(25) overflows f16: the softmax sum becomes Inf and the output NaN or 0.
      Verdict f16sum = judge_one(Op::Attention, K, ref, attention(c, Attn::F16Softmax), noise);
      EXPECT_FALSE(f16sum.pass) << f16sum.detail;
    }
  // Without the max subtraction a score above ~88.7 overflows f32 exp: Inf / Inf = NaN.
  AttnCase hot = attention_case(d, 2, 12, 64, 100);
  Tensor ref = attention(hot, Attn::F64);
  Verdict v = judge_one(Op::Attention, 12 * 64, ref, attention(hot, Attn::NoMaxSubtraction),
                        noise_of(ref, attention(hot, Attn::Sequential)));
  EXPECT_EQ(v.failed, CheckKind::NaN) << v.detail;
}

TEST(Simulation, SwigluFormulasPassApproximationsFail) {
  Data d;
  const size_t n = 4096;
  std::vector<float> g = d.normal(n, 4), u = d.normal(n);
  g[7] = 95;  // exp(95) overflows f32
  std::vector<float> ref(n), plain(n), recip(n), hard(n), overflow(n), noise_run(n);
  for (size_t i = 0; i < n; ++i) {
    const double x = g[i];
    ref[i] = float(x / (1 + std::exp(-x)) * u[i]);
    noise_run[i] = float(x / (1.0 + std::exp(-g[i])) * u[i]);  // as ref?acc=f32 does
    plain[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    recip[i] = g[i] * (1.0f / (1.0f + std::exp(-g[i]))) * u[i];
    hard[i] = g[i] * std::clamp(0.5f + g[i] / 4, 0.0f, 1.0f) * u[i];
    const float e = std::exp(g[i]);
    overflow[i] = g[i] * (e / (1.0f + e)) * u[i];
  }
  Shape s{1, int64_t(n)};
  Tensor expected = f32(s, ref);
  double noise = noise_of(expected, f32(s, noise_run));
  EXPECT_TRUE(judge_one(Op::Swiglu, 1, expected, f32(s, plain), noise).pass);
  EXPECT_TRUE(judge_one(Op::Swiglu, 1, expected, f32(s, recip), noise).pass);
  EXPECT_EQ(judge_one(Op::Swiglu, 1, expected, f32(s, hard), noise).failed, CheckKind::Numeric);
  EXPECT_EQ(judge_one(Op::Swiglu, 1, expected, f32(s, overflow), noise).failed, CheckKind::NaN);
}

// rope for one head of width hd at the given positions; theta in f64 or in f32.
Tensor rope(const std::vector<float>& x, const std::vector<int>& pos, int64_t hd, bool neox,
            bool f32_theta) {
  std::vector<float> out(x.size());
  for (size_t t = 0; t < pos.size(); ++t)
    for (int64_t i = 0; i < hd / 2; ++i) {
      const int64_t a = neox ? i : 2 * i, b = neox ? i + hd / 2 : 2 * i + 1;
      const float xa = x[t * size_t(hd) + size_t(a)], xb = x[t * size_t(hd) + size_t(b)];
      float* o = &out[t * size_t(hd)];
      if (f32_theta) {
        const float th = float(pos[t]) * std::pow(10000.0f, -2.0f * float(i) / float(hd));
        const float cs = std::cos(th), sn = std::sin(th);
        o[a] = xa * cs - xb * sn;
        o[b] = xa * sn + xb * cs;
      } else {
        const double th = pos[t] * std::pow(10000.0, -2.0 * double(i) / double(hd));
        o[a] = float(xa * std::cos(th) - xb * std::sin(th));
        o[b] = float(xa * std::sin(th) + xb * std::cos(th));
      }
    }
  return f32({int64_t(pos.size()), hd}, out);
}

TEST(Simulation, RopeInF32PassesWrongPairingFails) {
  Data d;
  const int64_t hd = 64;
  for (int first : {0, 500}) {
    std::vector<int> pos;
    for (int p = first; p < first + 12; ++p) pos.push_back(p);
    std::vector<float> x = d.normal(pos.size() * size_t(hd));
    Tensor ref = rope(x, pos, hd, false, false);
    Tensor in_f32 = rope(x, pos, hd, false, true);
    double noise = noise_of(ref, in_f32);  // here the f32 target is the noise run itself
    EXPECT_TRUE(judge_one(Op::Rope, 1, ref, in_f32, noise).pass);
    EXPECT_TRUE(judge_one(Op::Rope, 1, ref, in_f32).pass) << "uncalibrated";
    Verdict v = judge_one(Op::Rope, 1, ref, rope(x, pos, hd, true, false), noise);
    EXPECT_EQ(v.failed, CheckKind::Numeric);
    EXPECT_GT(v.worst_ratio, 1000);
  }
}

}  // namespace
}  // namespace tapml

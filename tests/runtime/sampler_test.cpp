#include "runtime/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"

namespace tapml {
namespace {

const std::vector<float> kLogits{0.5f, 2.0f, -1.0f, 1.5f, 2.0f};

TEST(Sampler, GreedyTakesTheFirstLargest) {
  Sampler s(0, 1, 7);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(s.sample(kLogits), 1);
}

TEST(Sampler, TheSameSeedRepeatsTheSameChoices) {
  Sampler a(1.0f, 1.0f, 42), b(1.0f, 1.0f, 42), c(1.0f, 1.0f, 43);
  std::vector<int> xa, xb, xc;
  for (int i = 0; i < 200; ++i) {
    xa.push_back(a.sample(kLogits));
    xb.push_back(b.sample(kLogits));
    xc.push_back(c.sample(kLogits));
  }
  EXPECT_EQ(xa, xb);
  EXPECT_NE(xa, xc);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  Sampler s(1.0f, 1.0f, 3);
  std::vector<int> counts(kLogits.size());
  const int n = 40000;
  for (int i = 0; i < n; ++i) counts[size_t(s.sample(kLogits))]++;
  double z = 0;
  for (float x : kLogits) z += std::exp(double(x));
  for (size_t i = 0; i < kLogits.size(); ++i) {
    double p = std::exp(double(kLogits[i])) / z;
    EXPECT_NEAR(counts[i] / double(n), p, 0.015) << "token " << i;
  }
}

TEST(Sampler, TopPKeepsOnlyTheNucleus) {
  // p = softmax: tokens 1 and 4 hold ~0.33 each, 3 ~0.2; top-p 0.6 keeps just 1 and 4.
  Sampler s(1.0f, 0.6f, 11);
  for (int i = 0; i < 2000; ++i) {
    int t = s.sample(kLogits);
    EXPECT_TRUE(t == 1 || t == 4) << t;
  }
}

TEST(Sampler, RejectsBadSettings) {
  EXPECT_THROW(Sampler(-1.0f, 1.0f, 0), Error);
  EXPECT_THROW(Sampler(1.0f, 0.0f, 0), Error);
  EXPECT_THROW(Sampler(1.0f, 1.5f, 0), Error);
}

}  // namespace
}  // namespace tapml

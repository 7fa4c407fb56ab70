#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace tapml {

Sampler::Sampler(float temperature, float top_p, uint64_t seed)
    : temperature_(temperature), top_p_(top_p), state_(seed ? seed : 0x9E3779B97F4A7C15ull) {
  TAPML_REQUIRE(temperature >= 0 && std::isfinite(temperature), "temperature must be >= 0");
  TAPML_REQUIRE(top_p > 0 && top_p <= 1, "top-p must be in (0, 1]");
}

int argmax(std::span<const float> xs) {
  TAPML_REQUIRE(!xs.empty(), "argmax of nothing");
  return int(std::max_element(xs.begin(), xs.end()) - xs.begin());
}

float Sampler::random_unit() {
  // xorshift64*: small, fast, and identical on every platform.
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  return float((state_ * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

int Sampler::sample(std::span<const float> logits) {
  if (temperature_ == 0) return argmax(logits);
  std::vector<double> p(logits.size());
  double mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) sum += (p[i] = std::exp((logits[i] - mx) / temperature_));
  for (double& x : p) x /= sum;
  std::vector<int> order(p.size());
  std::iota(order.begin(), order.end(), 0);
  size_t keep = p.size();
  if (top_p_ < 1) {
    std::sort(order.begin(), order.end(), [&](int a, int b) {
      return p[size_t(a)] > p[size_t(b)] || (p[size_t(a)] == p[size_t(b)] && a < b);
    });
    double cum = 0;
    for (keep = 0; keep < order.size();) {
      cum += p[size_t(order[keep++])];
      if (cum >= top_p_) break;
    }
  }
  double mass = 0;
  for (size_t i = 0; i < keep; ++i) mass += p[size_t(order[i])];
  double r = double(random_unit()) * mass, cdf = 0;
  for (size_t i = 0; i < keep; ++i) {
    cdf += p[size_t(order[i])];
    if (r < cdf) return order[i];
  }
  return order[keep - 1];
}

}  // namespace tapml

// Picks the next token from logits: greedy (temperature 0), or softmax with temperature
// and optional top-p (nucleus) cut, driven by a seeded generator so runs repeat exactly.
#pragma once
#include <cstdint>
#include <span>

namespace tapml {

class Sampler {
 public:
  Sampler(float temperature, float top_p, uint64_t seed);
  int sample(std::span<const float> logits);

 private:
  float random_unit();  // [0, 1)
  float temperature_, top_p_;
  uint64_t state_;
};

// Index of the largest value (the first one on ties).
int argmax(std::span<const float> xs);

}  // namespace tapml

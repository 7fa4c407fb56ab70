// The llama2.c reference generations in ../shared/golden/stories260K.
#pragma once
#include <string>
#include <vector>

namespace tapml::testing {

struct Golden {
  std::string file;
  std::string prompt;
  int steps = 0;
  std::vector<int> token_ids;
  std::string text;
};

// greedy_0.json, greedy_1.json, ... in order.
std::vector<Golden> stories_goldens();
// greedy_logits_64.json and its [64, 512] logits.
Golden stories_logits_golden(std::vector<float>* logits);

}  // namespace tapml::testing

// The Hugging Face family folders' goldens (transformers' float64 run): reading them, and
// running a model over them on a backend, for the tests of folders, converted GGUF files and
// backends alike.
#pragma once
#include <string>
#include <vector>

#include "model/model_file.h"

namespace tapml::testing {

struct FamilyGolden {
  std::vector<int> prompt, tokens;  // the prompt, and the prompt plus the greedy ids
  std::vector<float> logits;        // [tokens, vocab], teacher-forced
  double min_margin = 0;            // the smallest top-2 gap over the greedy steps
};
FamilyGolden read_family_golden(const std::string& dir);

// $TAPML_FAMILIES (folders made by make_families.py with other shapes and seeds), else the
// shared ones.
std::string families_root();
// The family folders below `root` (those with a golden.json), sorted.
std::vector<std::string> family_names(const std::string& root);

struct GoldenRun {
  std::vector<int> ids;  // the golden's length: N positions give N + 1 ids, the last dropped
  double worst = 0;      // max |logit - golden| / max |golden logit|
  size_t worst_position = 0;
  float largest = 0;  // max |golden logit|
};
// Runs `model` greedily from the golden prompt over as many positions as the golden has ids,
// keeping every position's logits.
GoldenRun run_against_golden(const ModelFile& model, const FamilyGolden& g,
                             const std::string& backend);

}  // namespace tapml::testing

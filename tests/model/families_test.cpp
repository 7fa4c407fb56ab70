// Every shared Hugging Face family folder against transformers' own float64 run: the greedy
// continuation of the golden prompt must be the golden ids exactly, and the logits of every
// position within 1e-4 of the largest logit, on every host backend. TAPML_FAMILIES points it at
// folders of other shapes and seeds.
#include <gtest/gtest.h>

#include "model/model_file.h"
#include "support/family_golden.h"

namespace tapml {
namespace {

using testing::families_root;

struct Variant {
  std::string family, backend;
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.family << "/" << v.backend; }

class FamilyGoldens : public ::testing::TestWithParam<Variant> {};

TEST_P(FamilyGoldens, GreedyIdsAndLogitsMatchTransformers) {
  const std::string dir = families_root() + "/" + GetParam().family;
  testing::FamilyGolden g = testing::read_family_golden(dir);
  testing::GoldenRun r = testing::run_against_golden(load_model(dir), g, GetParam().backend);
  EXPECT_EQ(r.ids, g.tokens);
  EXPECT_LE(r.worst, 1e-4) << "largest |logit| " << r.largest << ", worst at position "
                           << r.worst_position;
  EXPECT_GT(r.largest, 0.1f);  // the file really holds logits
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (const std::string& f : testing::family_names(families_root()))
    for (const char* b : {"ref", "cpu"}) out.push_back({f, b});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shared, FamilyGoldens, ::testing::ValuesIn(variants()),
                         [](const ::testing::TestParamInfo<Variant>& info) {
                           return info.param.family + "_" + info.param.backend;
                         });

}  // namespace
}  // namespace tapml

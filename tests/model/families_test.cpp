// Every shared Hugging Face family folder against transformers' own float64 run: the greedy
// continuation of the golden prompt must be the golden ids exactly, and the logits of every
// position within 1e-4 of the largest logit, on every host backend. TAPML_FAMILIES points it at
// folders of other shapes and seeds.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/model_file.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/shared.h"

namespace tapml {
namespace {

using testing::shared_path;

struct FamilyGolden {
  std::vector<int> prompt, tokens;
  std::vector<float> logits;  // [tokens, vocab]
};

FamilyGolden read_golden(const std::string& dir) {
  std::ifstream in(dir + "/golden.json");
  nlohmann::json j = nlohmann::json::parse(in);
  FamilyGolden g;
  g.prompt = j["prompt_ids"].get<std::vector<int>>();
  g.tokens = j["token_ids"].get<std::vector<int>>();
  std::ifstream lf(dir + "/logits.f32", std::ios::binary);
  lf.seekg(0, std::ios::end);
  g.logits.resize(size_t(lf.tellg()) / sizeof(float));
  lf.seekg(0);
  lf.read(reinterpret_cast<char*>(g.logits.data()), std::streamsize(g.logits.size() * 4));
  return g;
}

// $TAPML_FAMILIES, a folder of family folders made by make_families.py with other shapes and
// seeds, else the shared ones.
std::string families_root() {
  const char* env = std::getenv("TAPML_FAMILIES");
  return env && *env ? std::string(env) : shared_path("models/families");
}

std::vector<std::string> family_names() {
  std::vector<std::string> out;
  std::filesystem::path root = families_root();
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root, ec))
    if (std::filesystem::exists(e.path() / "golden.json")) out.push_back(e.path().filename());
  std::sort(out.begin(), out.end());
  return out;
}

struct Variant {
  std::string family, backend;
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.family << "/" << v.backend; }

class FamilyGoldens : public ::testing::TestWithParam<Variant> {};

TEST_P(FamilyGoldens, GreedyIdsAndLogitsMatchTransformers) {
  const std::string dir = families_root() + "/" + GetParam().family;
  ModelFile model = load_model(dir);
  FamilyGolden g = read_golden(dir);
  const int vocab = model.config.vocab_size;
  ASSERT_EQ(g.logits.size(), g.tokens.size() * size_t(vocab));

  Session session(model, Placement(GetParam().backend), int(g.tokens.size()) + 1);
  GenerateOptions o;
  o.steps = int(g.tokens.size());
  o.keep_logits = true;
  GenerateResult r = generate(session, g.prompt, o);
  // N positions run give N + 1 ids: the golden's N and the one predicted at the last.
  ASSERT_EQ(r.token_ids.size(), g.tokens.size() + 1);
  EXPECT_EQ(std::vector<int>(r.token_ids.begin(), r.token_ids.end() - 1), g.tokens);
  ASSERT_GE(r.logits.size(), g.logits.size());
  float largest = 0, worst = 0;
  size_t worst_at = 0;
  for (float x : g.logits) largest = std::max(largest, std::fabs(x));
  for (size_t i = 0; i < g.logits.size(); ++i) {
    float d = std::fabs(r.logits[i] - g.logits[i]);
    if (!(d <= worst)) {
      worst = d;
      worst_at = i;
    }
  }
  EXPECT_LE(worst, 1e-4f * largest)
      << "largest |logit| " << largest << ", worst at position " << worst_at / size_t(vocab)
      << " token " << worst_at % size_t(vocab);
  EXPECT_GT(largest, 0.1f);  // the file really holds logits
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (const std::string& f : family_names())
    for (const char* b : {"ref", "cpu"}) out.push_back({f, b});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shared, FamilyGoldens, ::testing::ValuesIn(variants()),
                         [](const ::testing::TestParamInfo<Variant>& info) {
                           return info.param.family + "_" + info.param.backend;
                         });

}  // namespace
}  // namespace tapml

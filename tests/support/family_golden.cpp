#include "support/family_golden.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/shared.h"

namespace tapml::testing {

FamilyGolden read_family_golden(const std::string& dir) {
  std::ifstream in(dir + "/golden.json");
  TAPML_REQUIRE(bool(in), dir + "/golden.json: cannot open");
  nlohmann::json j = nlohmann::json::parse(in);
  FamilyGolden g;
  g.prompt = j["prompt_ids"].get<std::vector<int>>();
  g.tokens = j["token_ids"].get<std::vector<int>>();
  g.min_margin = j.value("min_top2_margin", 0.0);
  std::ifstream lf(dir + "/logits.f32", std::ios::binary);
  lf.seekg(0, std::ios::end);
  g.logits.resize(size_t(lf.tellg()) / sizeof(float));
  lf.seekg(0);
  lf.read(reinterpret_cast<char*>(g.logits.data()), std::streamsize(g.logits.size() * 4));
  return g;
}

std::string families_root() {
  const char* env = std::getenv("TAPML_FAMILIES");
  return env && *env ? std::string(env) : shared_path("models/families");
}

std::vector<std::string> family_names(const std::string& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root, ec))
    if (std::filesystem::exists(e.path() / "golden.json")) out.push_back(e.path().filename());
  std::sort(out.begin(), out.end());
  return out;
}

GoldenRun run_against_golden(const ModelFile& model, const FamilyGolden& g,
                             const std::string& backend) {
  const size_t vocab = size_t(model.config.vocab_size);
  TAPML_REQUIRE(g.logits.size() == g.tokens.size() * vocab, "golden logits of the wrong size");
  Session session(model, Placement(backend), int(g.tokens.size()) + 1);
  GenerateOptions o;
  o.steps = int(g.tokens.size());
  o.keep_logits = true;
  GenerateResult r = generate(session, g.prompt, o);
  TAPML_REQUIRE(r.token_ids.size() == g.tokens.size() + 1 && r.logits.size() >= g.logits.size(),
                "the run stopped early");
  GoldenRun out;
  out.ids.assign(r.token_ids.begin(), r.token_ids.end() - 1);
  for (float x : g.logits) out.largest = std::max(out.largest, std::fabs(x));
  float worst = 0;
  for (size_t i = 0; i < g.logits.size(); ++i) {
    float d = std::fabs(r.logits[i] - g.logits[i]);
    if (!(d <= worst)) {
      worst = d;
      out.worst_position = i / vocab;
    }
  }
  out.worst = out.largest > 0 ? worst / out.largest : worst;
  return out;
}

}  // namespace tapml::testing

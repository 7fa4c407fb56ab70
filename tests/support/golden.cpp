#include "support/golden.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "support/shared.h"

namespace tapml::testing {

namespace {
Golden read_golden(const std::string& path) {
  std::ifstream f(path);
  nlohmann::json j = nlohmann::json::parse(f);
  Golden g;
  g.file = path;
  g.prompt = j.at("prompt");
  g.steps = j.at("steps");
  g.token_ids = j.at("token_ids").get<std::vector<int>>();
  g.text = j.at("text");
  return g;
}
}  // namespace

std::vector<Golden> stories_goldens() {
  std::vector<Golden> out;
  for (int i = 0;; ++i) {
    std::string rel = "golden/stories260K/greedy_" + std::to_string(i) + ".json";
    std::string dir = shared_path("golden/stories260K");
    if (!std::filesystem::exists(dir + "/greedy_" + std::to_string(i) + ".json")) break;
    out.push_back(read_golden(shared_path(rel)));
  }
  if (out.empty()) throw std::runtime_error("no golden generations found");
  return out;
}

Golden stories_logits_golden(std::vector<float>* logits) {
  Golden g = read_golden(shared_path("golden/stories260K/greedy_logits_64.json"));
  std::ifstream f(shared_path("golden/stories260K/logits_once_upon_a_time_64.f32"),
                  std::ios::binary);
  logits->assign(64 * 512, 0.0f);
  f.read(reinterpret_cast<char*>(logits->data()), std::streamsize(logits->size() * 4));
  if (!f) throw std::runtime_error("short logits file");
  return g;
}

}  // namespace tapml::testing

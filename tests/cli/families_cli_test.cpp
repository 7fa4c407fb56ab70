// Hugging Face folders from the command line: --prompt-ids through run, carve, test and
// migrate, with the goldens transformers computed.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/shared.h"

namespace tapml {
namespace {

using testing::run_command;
using testing::shared_path;
using testing::shell_quote;

std::string tapml(const std::string& args) { return testing::tapml_command(args); }

struct Golden {
  std::string dir, prompt_ids;
  std::vector<int> tokens;
};

Golden golden(const std::string& family) {
  Golden g;
  g.dir = shared_path("models/families/" + family);
  std::ifstream in(g.dir + "/golden.json");
  nlohmann::json j = nlohmann::json::parse(in);
  for (int id : j["prompt_ids"])
    g.prompt_ids += (g.prompt_ids.empty() ? "" : ",") + std::to_string(id);
  g.tokens = j["token_ids"].get<std::vector<int>>();
  return g;
}

TEST(FamiliesCli, RunWithPromptIdsGivesTheGoldenIdsAndLogits) {
  Golden g = golden("gemma2");
  std::string logits = testing::temp_dir() + "/l.f32";
  auto r = run_command(tapml("run --model " + shell_quote(g.dir) + " --prompt-ids " + g.prompt_ids +
                             " --steps " + std::to_string(g.tokens.size()) +
                             " --temperature 0 --backend cpu --json --logits-out " +
                             shell_quote(logits)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  std::vector<int> ids = j["token_ids"].get<std::vector<int>>();
  ASSERT_EQ(ids.size(), g.tokens.size() + 1);
  EXPECT_EQ(std::vector<int>(ids.begin(), ids.end() - 1), g.tokens);
  EXPECT_FALSE(j.contains("text"));  // no tokenizer, no text
  EXPECT_EQ(j["prompt"], "ids:" + g.prompt_ids);

  auto read = [](const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), v.size() * 4);
    return v;
  };
  std::vector<float> got = read(logits), want = read(g.dir + "/logits.f32");
  ASSERT_EQ(got.size(), want.size());
  float largest = 0, worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    largest = std::max(largest, std::fabs(want[i]));
    worst = std::max(worst, std::fabs(got[i] - want[i]));
  }
  EXPECT_LE(worst, 1e-4f * largest);

  // The text form prints the ids.
  r = run_command(tapml("run --model " + shell_quote(g.dir) + " --prompt-ids " + g.prompt_ids +
                        " --steps 20 --backend ref"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string first;
  for (size_t i = 0; i < 20; ++i) first += (i ? " " : "") + std::to_string(g.tokens[i]);
  EXPECT_EQ(r.out.rfind(first, 0), 0u) << r.out;
}

TEST(FamiliesCli, PromptMistakesAreUsageErrors) {
  Golden g = golden("qwen2");
  std::string m = " --model " + shell_quote(g.dir);
  struct Case {
    std::string args, words;
  };
  for (const Case& c : std::vector<Case>{
           {"run" + m + " --prompt 'hello'", "has no tokenizer: give the prompt as token ids"},
           {"run" + m + " --prompt-ids 1,x,3", "'x' is not a token id"},
           {"run" + m + " --prompt-ids 1,,3", "'' is not a token id"},
           {"run" + m + " --prompt-ids 512", "token id 512 is outside the vocabulary (0 to 511)"},
           {"run" + m + " --prompt-ids -1", "outside the vocabulary"},
           {"run" + m + " --prompt-ids 1 --prompt hi", "not both"},
           {"migrate" + m + " --backend cpu", "has no tokenizer"},
           {"carve" + m + " --out /tmp/never.corpus", "--prompt-ids"}}) {
    auto r = run_command(tapml(c.args));
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.words), std::string::npos) << c.args << "\n" << r.err;
  }
}

TEST(FamiliesCli, CarveReplayAndMigrateAFamily) {
  Golden g = golden("phi");
  std::string corpus = testing::temp_dir() + "/phi.corpus";
  auto r =
      run_command(tapml("carve --model " + shell_quote(g.dir) + " --prompt-ids " + g.prompt_ids +
                        " --prompt-ids 5,6,7 --steps 20 --weights-by-reference --out " +
                        shell_quote(corpus) + " -q"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_command(tapml("test --corpus " + shell_quote(corpus) + " --backend cpu"));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // The corpus holds the family's new ops.
  for (const char* op : {"layernorm", "bias", "gelu"}) {
    r = run_command(
        tapml("test --corpus " + shell_quote(corpus) + " --backend cpu --op ^" + op + "$"));
    EXPECT_EQ(r.exit_code, 0) << op << ": " << r.out << r.err;
  }
  r = run_command(tapml("migrate --model " + shell_quote(g.dir) + " --prompt-ids " + g.prompt_ids +
                        " --steps 20 --backend cpu -q"));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("PASS"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace tapml

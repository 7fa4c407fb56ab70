// End-to-end: stories260K must reproduce llama2.c's greedy generations exactly on every
// backend and from both file formats, and its logits within 1e-4 of the largest logit.
#include "support/golden.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model/model_file.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/shared.h"
#include "tokenizer/load.h"

namespace tapml {
namespace {

using testing::shared_path;

struct Variant {
  std::string backend;
  std::string format;  // "bin" or "gguf"
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.backend << "/" << v.format; }

std::string variant_name(const ::testing::TestParamInfo<Variant>& info) {
  return info.param.backend + "_" + info.param.format;
}

class StoriesGolden : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    bool bin = GetParam().format == "bin";
    model_ = load_model(shared_path(bin ? "models/stories260K/stories260K.bin"
                                        : "models/stories260K/stories260K.gguf"));
    tokenizer_ = std::make_unique<Tokenizer>(
        load_tokenizer(bin ? shared_path("models/stories260K/tok512.bin") : "", model_.gguf.get(),
                       model_.config.vocab_size));
  }
  GenerateOptions options(int steps, bool logits) const {
    GenerateOptions o;
    o.steps = steps;
    o.keep_logits = logits;
    o.stop_tokens = {tokenizer_->vocab().eos, tokenizer_->vocab().bos};
    return o;
  }
  ModelFile model_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

TEST_P(StoriesGolden, GreedyTokensEqualLlama2c) {
  // The GGUF declares a context of 128 positions; the goldens run 256, as llama.cpp can.
  Session session(model_, Placement(GetParam().backend), 512);
  for (const testing::Golden& g : testing::stories_goldens()) {
    std::vector<int> prompt = tokenizer_->encode(g.prompt, true);
    GenerateResult r = generate(session, prompt, options(g.steps, false));
    EXPECT_EQ(r.token_ids, g.token_ids) << g.file;
    EXPECT_EQ(tokenizer_->decode(r.token_ids), g.text) << g.file;
  }
}

TEST_P(StoriesGolden, LogitsMatchLlama2c) {
  std::vector<float> want;
  testing::Golden g = testing::stories_logits_golden(&want);
  Session session(model_, Placement(GetParam().backend));
  GenerateResult r = generate(session, tokenizer_->encode(g.prompt, true), options(g.steps, true));
  ASSERT_EQ(r.token_ids, g.token_ids);
  ASSERT_EQ(r.logits.size(), want.size());
  float largest = 0, worst = 0;
  for (float x : want) largest = std::max(largest, std::fabs(x));
  for (size_t i = 0; i < want.size(); ++i)
    worst = std::max(worst, std::fabs(r.logits[i] - want[i]));
  EXPECT_LE(worst, 1e-4f * largest) << "largest |logit| " << largest;
  EXPECT_GT(largest, 1.0f);  // the file really holds logits
}

INSTANTIATE_TEST_SUITE_P(Backends, StoriesGolden,
                         ::testing::Values(Variant{"ref", "bin"}, Variant{"cpu", "bin"},
                                           Variant{"ref", "gguf"}, Variant{"cpu", "gguf"}),
                         variant_name);

TEST(StoriesPlacement, MixedPlacementsGiveTheGoldenTokens) {
  ModelFile m = load_model(shared_path("models/stories260K/stories260K.gguf"));
  Tokenizer tok = load_tokenizer("", m.gguf.get(), m.config.vocab_size);
  testing::Golden g = testing::stories_goldens().at(1);
  std::vector<std::vector<std::string>> rule_sets = {
      {"matmul=cpu"},   {"blk\\.1\\.=cpu"}, {"attention=cpu", "rope=cpu"},
      {"^output$=cpu"}, {"kv_store=cpu"},   {"blk\\.[024]\\.=cpu", "token_embd=cpu"}};
  for (const auto& rules : rule_sets) {
    Placement p("ref");
    for (const auto& r : rules) p.add_rule(r);
    Session session(m, p);
    GenerateOptions o;
    o.steps = 96;
    o.stop_tokens = {tok.vocab().eos, tok.vocab().bos};
    GenerateResult r = generate(session, tok.encode(g.prompt, true), o);
    std::vector<int> want(g.token_ids.begin(), g.token_ids.begin() + 97);
    EXPECT_EQ(r.token_ids, want) << rules[0];
  }
}

}  // namespace
}  // namespace tapml

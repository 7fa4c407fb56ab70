#include "runtime/generate.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "support/tiny_model.h"

namespace tapml {
namespace {

TEST(Generate, StepsCountPositionsPromptIncluded) {
  ModelFile m = testing::make_tiny_llama(9);
  Session s(m, Placement("cpu"));
  GenerateOptions o;
  o.steps = 20;
  o.keep_logits = true;
  GenerateResult r = generate(s, {1, 3, 4}, o);
  EXPECT_EQ(r.token_ids.size(), 21u);
  EXPECT_EQ(r.positions, 20);
  EXPECT_EQ(r.logits.size(), size_t(20 * m.config.vocab_size));
  EXPECT_EQ(r.decode_tokens, 17);
}

TEST(Generate, StopsAfterEmittingAStopToken) {
  ModelFile m = testing::make_tiny_llama(10);
  Session s(m, Placement("cpu"));
  GenerateOptions o;
  o.steps = 30;
  std::vector<int> free_run = generate(s, {1, 3, 4}, o).token_ids;
  int stop = free_run[5];
  o.stop_tokens = {stop};
  std::vector<int> stopped = generate(s, {1, 3, 4}, o).token_ids;
  size_t first = size_t(std::find(free_run.begin() + 3, free_run.end(), stop) - free_run.begin());
  ASSERT_EQ(stopped.size(), first + 1);
  EXPECT_EQ(stopped.back(), stop);
  EXPECT_TRUE(std::equal(stopped.begin(), stopped.end(), free_run.begin()));
}

TEST(Generate, RejectsStepsThatCannotHoldThePromptOrFitTheContext) {
  ModelFile m = testing::make_tiny_llama(11);
  Session s(m, Placement("ref"));
  GenerateOptions o;
  o.steps = 2;
  EXPECT_THROW(generate(s, {1, 3, 4}, o), Error);
  o.steps = m.config.max_seq_len + 1;
  EXPECT_THROW(generate(s, {1, 3, 4}, o), Error);
  Session longer(m, Placement("ref"), m.config.max_seq_len + 8);
  GenerateResult r = generate(longer, {1, 3, 4}, o);
  EXPECT_EQ(r.positions, m.config.max_seq_len + 1);
}

}  // namespace
}  // namespace tapml

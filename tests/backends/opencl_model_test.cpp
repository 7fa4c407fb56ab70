// The opencl backend on a whole model (stories260K): llama2.c's golden tokens, a corpus
// carved on ref that replays completely, and a migration that passes (and pins a fault
// planted in one site). Skipped, saying why, where the build has no OpenCL or the machine
// no OpenCL device.
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>

#include "backend/registry.h"
#include "backends/builtin.h"
#ifdef TAPML_WITH_OPENCL
#include "backends/opencl/opencl_backend.h"
#include "migrate/migrate.h"
#include "model/model_file.h"
#include "replay/replay.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/carve.h"
#include "support/golden.h"
#include "support/shared.h"
#include "support/stories.h"
#include "tokenizer/load.h"
#endif

namespace tapml {
namespace {

#ifndef TAPML_WITH_OPENCL

TEST(OpenClModel, Skipped) { GTEST_SKIP() << "built without OpenCL (TAPML_WITH_OPENCL is off)"; }

#else

// Why no OpenCL device can be opened here, or "" when one can.
const std::string& unavailable() {
  static std::string why = [] {
    try {
      make_opencl_backend(BackendUri::parse("opencl"));
      return std::string();
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
  }();
  return why;
}

class OpenClModel : public ::testing::Test {
 protected:
  void SetUp() override {
    register_builtin_backends();
    if (!unavailable().empty()) GTEST_SKIP() << "no OpenCL device: " << unavailable();
  }
};

using testing::stories;
using testing::stories_tokenizer;

TEST_F(OpenClModel, StoriesGoldenTokens) {
  ModelFile m = load_model(testing::shared_path("models/stories260K/stories260K.bin"));
  Tokenizer tok = load_tokenizer(testing::shared_path("models/stories260K/tok512.bin"), nullptr,
                                 m.config.vocab_size);
  Session session(m, Placement("opencl"), 512);
  for (const testing::Golden& g : testing::stories_goldens()) {
    GenerateOptions o;
    o.steps = g.steps;
    o.stop_tokens = {tok.vocab().eos, tok.vocab().bos};
    GenerateResult r = generate(session, tok.encode(g.prompt, true), o);
    EXPECT_EQ(r.token_ids, g.token_ids) << g.file;
  }
}

TEST_F(OpenClModel, CarvedStoriesCorpusReplaysCompletely) {
  testing::expect_stories_corpus_replays("opencl", testing::temp_dir() + "/opencl_stories.db");
}

TEST_F(OpenClModel, MigrationPassesAndPinsAFault) {
  testing::expect_stories_migration_pins_a_fault("opencl", 24);
}

#endif

}  // namespace
}  // namespace tapml

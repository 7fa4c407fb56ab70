#include "support/stories.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "replay/replay.h"
#include "support/carve.h"
#include "support/shared.h"
#include "tokenizer/load.h"

namespace tapml::testing {

const ModelFile& stories() {
  static ModelFile m = load_model(shared_path("models/stories260K/stories260K.gguf"));
  return m;
}

const Tokenizer& stories_tokenizer() {
  static Tokenizer tok = load_tokenizer("", stories().gguf.get(), stories().config.vocab_size);
  return tok;
}

const std::string& stories_corpus(int steps) {
  static std::map<int, std::string> made;
  auto [at, fresh] = made.try_emplace(steps);
  if (fresh) {
    at->second = temp_dir() + "/stories_" + std::to_string(steps) + ".corpus";
    carve_on_ref(stories(), at->second, stories_tokenizer().encode("Once upon a time", true),
                 steps);
  }
  return at->second;
}

MigrateOptions stories_migrate_options(const std::string& target, int steps) {
  MigrateOptions o;
  o.target = target;
  o.steps = steps;
  o.prompts = {stories_tokenizer().encode("Once upon a time", true)};
  o.stop_tokens = {stories_tokenizer().vocab().eos};
  return o;
}

void expect_stories_corpus_replays(const std::string& target, const std::string& db) {
  carve_on_ref(stories(), db, stories_tokenizer().encode("Once upon a time", true), 16);
  ReplayRun run = replay_corpus(db, target, {});
  std::set<Op> ops;
  int passed = 0;
  for (const TestResult& r : run.results) {
    EXPECT_TRUE(r.pass) << "test " << r.id << " (" << op_name(r.op) << " at " << r.site
                        << "): " << r.error << r.verdict.detail;
    passed += r.pass;
    ops.insert(r.op);
  }
  EXPECT_EQ(passed, int(run.results.size()));
  EXPECT_GE(run.results.size(), 40u);
  for (Op op : {Op::Embedding, Op::RmsNorm, Op::Matmul, Op::Rope, Op::KvStore, Op::Attention,
                Op::Swiglu, Op::Add})
    EXPECT_TRUE(ops.count(op)) << op_name(op) << " was not replayed";
}

void expect_stories_migration_pins_a_fault(const std::string& target, int steps) {
  MigrateReport ok = migrate(stories(), stories_migrate_options(target, steps));
  EXPECT_EQ(ok.status, "pass") << ok.summary;
  for (const SiteAttribution& s : ok.sites)
    EXPECT_TRUE(s.info.target_supports) << s.info.unsupported_reason;

  MigrateReport bad = migrate(
      stories(), stories_migrate_options(
                     "faulty:" + target + "?fault=rope_pairing&site=^blk\\.2\\.rope_k$", steps));
  EXPECT_EQ(bad.status, "fail") << bad.summary;
  ASSERT_EQ(bad.culprits.size(), 1u) << bad.summary;
  EXPECT_EQ(bad.culprits[0].site, "blk.2.rope_k") << bad.summary;
}

}  // namespace tapml::testing

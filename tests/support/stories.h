// stories260K as the whole-model tests of a backend use it: the GGUF file (loaded once), its
// tokenizer, and migration options for "Once upon a time".
#pragma once
#include <string>

#include "migrate/migrate.h"
#include "model/model_file.h"
#include "tokenizer/tokenizer.h"

namespace tapml::testing {

const ModelFile& stories();
const Tokenizer& stories_tokenizer();
// A corpus carved on ref from "Once upon a time" over `steps` positions: carved once per
// test binary and steps, in a temporary folder.
const std::string& stories_corpus(int steps);
// Migrating stories260K onto `target` over `steps` positions of "Once upon a time".
MigrateOptions stories_migrate_options(const std::string& target, int steps);

// The whole-model checks of a backend (gtest expectations, failing the calling test):
// a corpus carved on ref from "Once upon a time" (16 steps, into `db`) replays completely on
// `target` and covers the Llama ops;
void expect_stories_corpus_replays(const std::string& target, const std::string& db);
// migrating onto `target` over `steps` positions passes with every site offered, and with
// faulty:TARGET's rope_pairing planted at blk.2.rope_k fails naming exactly that site.
void expect_stories_migration_pins_a_fault(const std::string& target, int steps);

}  // namespace tapml::testing

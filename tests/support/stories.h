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
// Migrating stories260K onto `target` over `steps` positions of "Once upon a time".
MigrateOptions stories_migrate_options(const std::string& target, int steps);

}  // namespace tapml::testing

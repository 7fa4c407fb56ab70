#include "support/stories.h"

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

MigrateOptions stories_migrate_options(const std::string& target, int steps) {
  MigrateOptions o;
  o.target = target;
  o.steps = steps;
  o.prompts = {stories_tokenizer().encode("Once upon a time", true)};
  o.stop_tokens = {stories_tokenizer().vocab().eos};
  return o;
}

}  // namespace tapml::testing

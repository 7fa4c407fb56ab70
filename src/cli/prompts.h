// Prompts on the command line, as text (--prompt, encoded by the model's tokenizer, BOS
// first) or as token ids (--prompt-ids 1,2,3, taken as they are, no BOS added) for models
// that come without a tokenizer. run, carve, compare and migrate share them.
#pragma once
#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "model/model_file.h"
#include "tokenizer/tokenizer.h"

namespace tapml::cli {

struct PromptArgs {
  std::vector<std::string> texts, ids;
  std::string tokenizer;
  bool single = false;  // one prompt, text or ids
};

// --prompt (repeatable unless `single`), --prompt-ids and --tokenizer.
void add_prompt_options(CLI::App* c, PromptArgs& p, bool single);

struct Prompts {
  std::vector<std::vector<int>> ids;
  std::vector<std::string> labels;  // the text, or "ids:1,2,3"
  // Absent when only ids were given and the model has no tokenizer.
  std::optional<Tokenizer> tokenizer;
  std::vector<int> stop_tokens;  // empty without a tokenizer
};

// The prompts given, or one empty text prompt (BOS alone) when none were. Usage errors for
// ids that are not integers or lie outside the vocabulary, and for text prompts to a model
// without a tokenizer.
Prompts resolve_prompts(const PromptArgs& p, const ModelFile& model);

// "1,2,3" as ids in [0, vocab); UsageError naming `option` otherwise.
std::vector<int> parse_prompt_ids(const std::string& text, int vocab, const std::string& option);

}  // namespace tapml::cli

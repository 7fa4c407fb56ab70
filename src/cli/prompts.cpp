#include "cli/prompts.h"

#include <cerrno>
#include <cstdlib>

#include "cli/commands.h"
#include "core/error.h"
#include "runtime/generate.h"
#include "tokenizer/load.h"

namespace tapml::cli {

void add_prompt_options(CLI::App* c, PromptArgs& p, bool single) {
  p.single = single;
  if (single) {
    p.texts.resize(1);
    c->add_option("--prompt", p.texts[0], "prompt text (default: empty, start from BOS)");
    p.ids.resize(1);
    c->add_option("--prompt-ids", p.ids[0],
                  "the prompt as token ids, e.g. 1,2,3 (taken as they are: no BOS added; for "
                  "models without a tokenizer)");
  } else {
    c->add_option("--prompt", p.texts, "a prompt (repeatable; \"\" starts from BOS)");
    c->add_option("--prompt-ids", p.ids,
                  "a prompt as token ids, e.g. 1,2,3 (repeatable; no BOS added; for models "
                  "without a tokenizer)");
  }
  c->add_option("--tokenizer", p.tokenizer,
                "llama2.c tokenizer.bin, GGUF vocabulary, or Hugging Face tokenizer.json (or "
                "its folder); default: the one in the GGUF file or the model's folder");
}

std::vector<int> parse_prompt_ids(const std::string& text, int vocab, const std::string& option) {
  std::vector<int> ids;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    char* end = nullptr;
    errno = 0;
    long long v = item.empty() ? -1 : std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0)
      throw UsageError(option + " '" + text + "': '" + item +
                       "' is not a token id (expected integers separated by commas)");
    if (v < 0 || v >= vocab)
      throw UsageError(option + " '" + text + "': token id " + item +
                       " is outside the vocabulary (0 to " + std::to_string(vocab - 1) + ")");
    ids.push_back(int(v));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return ids;
}

Prompts resolve_prompts(const PromptArgs& p, const ModelFile& model) {
  std::vector<std::string> texts, ids;
  for (const std::string& t : p.texts) texts.push_back(t);
  for (const std::string& i : p.ids)
    if (!i.empty()) ids.push_back(i);
  if (p.single && !ids.empty()) {
    // A single-prompt command keeps an empty text slot; it counts only without ids.
    if (!texts[0].empty()) throw UsageError("give --prompt or --prompt-ids, not both");
    texts.clear();
  }
  if (texts.empty() && ids.empty()) texts.push_back("");

  Prompts out;
  const std::string folder = model.format == "hf" ? model.path : "";
  bool has_tokenizer = !p.tokenizer.empty() ||
                       (model.gguf && model.gguf->has("tokenizer.ggml.tokens")) ||
                       !folder_tokenizer_json(folder).empty();
  if (!texts.empty() && !has_tokenizer)
    throw UsageError(model.path +
                     " has no tokenizer: give the prompt as token ids (--prompt-ids 1,2,3) or a "
                     "--tokenizer");
  if (has_tokenizer) {
    out.tokenizer = load_tokenizer(p.tokenizer, model.gguf.get(), model.config.vocab_size, folder);
    out.stop_tokens = stop_tokens(model, out.tokenizer->vocab());
  }
  for (const std::string& t : texts) {
    // Framed as the vocabulary asks (BOS for SentencePiece and Llama 3, nothing for GPT-2);
    // an empty prompt without a BOS to stand for it starts from BOS all the same.
    std::vector<int> ids = out.tokenizer->encode(t, true);
    if (ids.empty()) {
      int bos = out.tokenizer->vocab().bos;
      if (bos < 0) throw UsageError("the prompt is empty and this vocabulary has no BOS token");
      ids.push_back(bos);
    }
    out.ids.push_back(std::move(ids));
    out.labels.push_back(t);
  }
  for (const std::string& i : ids) {
    out.ids.push_back(parse_prompt_ids(i, model.config.vocab_size, "--prompt-ids"));
    out.labels.push_back("ids:" + i);
  }
  return out;
}

}  // namespace tapml::cli

#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/json_output.h"
#include "format/gguf.h"
#include "model/model_file.h"
#include "tokenizer/load.h"

namespace tapml::cli {

namespace {
struct TokenizeArgs {
  std::string model, tokenizer, text;
  bool json = false, bos = false, parse_special = false;
};

void tokenize(const TokenizeArgs& a) {
  // A vocabulary-only GGUF has no weights, so only the GGUF header is needed here: its tokens
  // are the vocabulary that a --tokenizer must fit.
  std::shared_ptr<const gguf::File> file;
  int vocab_size = 0;
  std::string folder;
  if (gguf::File::has_magic(a.model)) {
    file = std::make_shared<gguf::File>(gguf::File::open(a.model));
    // Without tokens load_tokenizer below says the file holds no tokenizer.
    if (file->has("tokenizer.ggml.tokens"))
      vocab_size = int(file->get_array("tokenizer.ggml.tokens").size());
  }
  if (!file || (vocab_size == 0 && !a.tokenizer.empty())) {
    ModelFile model = load_model(a.model);
    vocab_size = model.config.vocab_size;
    if (model.format == "hf") folder = model.path;
  }
  Tokenizer tok = load_tokenizer(a.tokenizer, file.get(), vocab_size, folder);
  std::vector<int> ids = tok.encode(a.text, a.bos, a.parse_special);
  if (a.json) {
    nlohmann::json j;
    j["token_ids"] = ids;
    nlohmann::json pieces = nlohmann::json::array();
    for (int id : ids) pieces.push_back(tok.vocab().pieces[size_t(id)]);
    j["pieces"] = pieces;
    print_json(j, -1);
  } else {
    for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
    std::puts("");
  }
}
}  // namespace

void add_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* c = app.add_subcommand("tokenize", "Print the token ids of a text");
  c->footer(
      "Example:\n  tapml tokenize --model stories260K.bin --tokenizer tok512.bin --text 'Once upon "
      "a time'");
  c->add_option("--model", a->model, "model file or folder, or a vocabulary-only GGUF")->required();
  c->add_option("--tokenizer", a->tokenizer,
                "tokenizer.bin, GGUF vocabulary, or tokenizer.json (or its folder); default: the "
                "one in the GGUF or the model's folder");
  c->add_option("--text", a->text, "text to tokenize")->required();
  c->add_flag("--bos", a->bos, "put BOS first");
  c->add_flag("--parse-special", a->parse_special,
              "turn the text of control tokens (e.g. <|endoftext|>) into those tokens");
  c->add_flag("--json", a->json, "print JSON: token_ids and pieces");
  c->callback([a] { tokenize(*a); });
}

}  // namespace tapml::cli

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/json_output.h"
#include "core/error.h"
#include "core/read_file.h"
#include "format/gguf.h"
#include "model/model_file.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/load.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/vectors.h"

namespace tapml::cli {

namespace {
struct TokenizeArgs {
  std::string model, tokenizer, text, file, vectors;
  bool json = false, bos = false, parse_special = false, stats = false;
  CLI::Option *text_opt = nullptr, *file_opt = nullptr, *vectors_opt = nullptr;
};

Tokenizer open_tokenizer(const TokenizeArgs& a) {
  // A tokenizer file on its own: its vocabulary is the whole story.
  if (a.tokenizer.empty() && a.model.ends_with(".json"))
    return Tokenizer(load_hf_tokenizer_json(a.model));
  if (a.tokenizer.empty() && a.model.ends_with(".model"))
    return Tokenizer(load_sentencepiece_model(a.model));
  // A vocabulary-only GGUF has no weights, so only the GGUF header is needed here.
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
  return load_tokenizer(a.tokenizer, file.get(), vocab_size, folder);
}

std::string ids_text(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
  return s;
}

// llama.cpp's tokenizer test vectors (tokenizer/vectors.h). Prints each mismatch and the
// count; fails unless all match.
void check_vectors(const Tokenizer& tok, const TokenizeArgs& a) {
  const std::vector<TokenizerVector> vectors = read_tokenizer_vectors(a.vectors);
  size_t passed = 0;
  for (size_t i = 0; i < vectors.size(); ++i) {
    std::string got = ids_text(tok.encode(vectors[i].text, a.bos, a.parse_special));
    const std::vector<int>& want = vectors[i].ids;
    if (got == ids_text(want)) {
      ++passed;
    } else {
      nlohmann::json text = vectors[i].text;
      std::printf("MISMATCH %zu: %s\n  want %s\n  got  %s\n", i,
                  text.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str(),
                  ids_text(want).c_str(), got.c_str());
    }
  }
  std::printf("%zu/%zu vectors match\n", passed, vectors.size());
  TAPML_REQUIRE(passed == vectors.size(), std::to_string(vectors.size() - passed) + " of " +
                                              std::to_string(vectors.size()) + " vectors differ");
}

void tokenize(const TokenizeArgs& a) {
  // --text may be empty (it tokenizes to nothing), so count the options given.
  size_t sources = a.text_opt->count() + a.file_opt->count() + a.vectors_opt->count();
  if (sources != 1) throw UsageError("give exactly one of --text, --file and --vectors");
  auto t0 = std::chrono::steady_clock::now();
  Tokenizer tok = open_tokenizer(a);
  auto t1 = std::chrono::steady_clock::now();
  if (!a.vectors.empty()) return check_vectors(tok, a);

  const std::string text = a.file_opt->count() ? read_file_bytes(a.file) : a.text;
  auto t2 = std::chrono::steady_clock::now();
  std::vector<int> ids = tok.encode(text, a.bos, a.parse_special);
  auto t3 = std::chrono::steady_clock::now();
  if (a.stats) {
    auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
    double enc = ms(t3 - t2);
    std::fprintf(
        stderr, "[tokenizer loaded in %.1f ms; %zu bytes -> %zu tokens in %.1f ms (%.2f MB/s)]\n",
        ms(t1 - t0), text.size(), ids.size(), enc, enc > 0 ? double(text.size()) / 1e3 / enc : 0.0);
  }
  if (a.json) {
    nlohmann::json j;
    j["token_ids"] = ids;
    nlohmann::json pieces = nlohmann::json::array();
    for (int id : ids) pieces.push_back(tok.vocab().pieces[size_t(id)]);
    j["pieces"] = pieces;
    print_json(j, -1);
  } else {
    std::puts(ids_text(ids).c_str());
  }
}
}  // namespace

void add_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* c = app.add_subcommand("tokenize", "Print the token ids of a text");
  c->footer(
      "Examples:\n"
      "  tapml tokenize --model stories260K.bin --tokenizer tok512.bin --text 'Once upon a time'\n"
      "  tapml tokenize --model ggml-vocab-llama-bpe.gguf --file book.txt --stats\n"
      "  tapml tokenize --model ggml-vocab-qwen2.gguf --vectors ggml-vocab-qwen2.gguf.inp\n"
      "     (llama.cpp's test vectors: checks every input against the .out next to it)");
  c->add_option("--model", a->model,
                "model file or folder, a vocabulary-only GGUF, or a tokenizer.json or .model file")
      ->required();
  c->add_option("--tokenizer", a->tokenizer,
                "tokenizer.bin, GGUF vocabulary, tokenizer.json (or its folder) or SentencePiece "
                ".model; default: the one in the GGUF or the model's folder");
  a->text_opt = c->add_option("--text", a->text, "text to tokenize");
  a->file_opt = c->add_option("--file", a->file, "tokenize the contents of this file");
  a->vectors_opt =
      c->add_option("--vectors", a->vectors,
                    "check llama.cpp test vectors: FILE.inp inputs against FILE.out ids");
  c->add_flag("--bos", a->bos,
              "frame the text as the vocabulary asks: BOS first where it adds one (and EOS, "
              "BERT's [CLS]/[SEP])");
  c->add_flag("--parse-special", a->parse_special,
              "turn the text of control tokens (e.g. <|endoftext|>) into those tokens");
  c->add_flag("--stats", a->stats, "print load and tokenize times to stderr");
  c->add_flag("--json", a->json, "print JSON: token_ids and pieces");
  c->callback([a] { tokenize(*a); });
}

}  // namespace tapml::cli

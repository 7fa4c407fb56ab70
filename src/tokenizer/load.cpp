#include "tokenizer/load.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "format/gguf.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_model.h"

namespace tapml {

namespace {

// A tokenizer.json by its name, or by starting as a JSON object does; a llama2.c
// tokenizer.bin starts with a small int32, so its second byte is 0.
bool looks_like_json(const std::string& path) {
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) return true;
  std::ifstream in(path, std::ios::binary);
  char head[2] = {0, 0};
  in.read(head, 2);
  if (in.gcount() < 2 || head[0] != '{') return false;
  return head[1] == '"' || head[1] == '}' || head[1] == ' ' || head[1] == '\n' || head[1] == '\r' ||
         head[1] == '\t';
}

}  // namespace

std::string folder_tokenizer_json(const std::string& model_folder) {
  std::error_code ec;
  if (model_folder.empty() || !std::filesystem::is_directory(model_folder, ec)) return "";
  std::filesystem::path json = std::filesystem::path(model_folder) / "tokenizer.json";
  return std::filesystem::is_regular_file(json, ec) ? json.string() : "";
}

Tokenizer load_tokenizer(const std::string& tokenizer_path, const gguf::File* embedded,
                         int model_vocab_size, const std::string& model_folder) {
  Vocab vocab;
  std::string from = tokenizer_path;
  bool hf_json = false;
  if (!tokenizer_path.empty()) {
    std::error_code ec;
    if (std::filesystem::is_directory(tokenizer_path, ec)) {
      from = folder_tokenizer_json(tokenizer_path);
      TAPML_REQUIRE(!from.empty(), tokenizer_path + ": a folder without tokenizer.json");
      hf_json = true;
    } else if (gguf::File::has_magic(tokenizer_path)) {
      vocab = load_gguf_vocab(gguf::File::open(tokenizer_path));
    } else if (looks_like_json(tokenizer_path)) {
      hf_json = true;
    } else if (tokenizer_path.ends_with(".model")) {
      vocab = load_sentencepiece_model(tokenizer_path);
    } else {
      vocab = load_llama2c_vocab(tokenizer_path, model_vocab_size);
    }
  } else if (embedded != nullptr && embedded->has("tokenizer.ggml.tokens")) {
    vocab = load_gguf_vocab(*embedded);
    from = embedded->path();
  } else if (!(from = folder_tokenizer_json(model_folder)).empty()) {
    hf_json = true;
  } else if (!model_folder.empty()) {
    throw Error(model_folder + " has no tokenizer.json: pass --tokenizer PATH");
  } else {
    TAPML_REQUIRE(embedded != nullptr,
                  "this model file holds no tokenizer: pass --tokenizer PATH (e.g. tokenizer.bin)");
    throw Error(embedded->path() +
                " holds no tokenizer (tokenizer.ggml.tokens): pass --tokenizer PATH");
  }
  if (hf_json) {
    vocab = load_hf_tokenizer_json(from);
    TAPML_REQUIRE(vocab.size() <= model_vocab_size,
                  from + ": the tokenizer has " + std::to_string(vocab.size()) +
                      " tokens, more than the model's " + std::to_string(model_vocab_size));
    for (int i = vocab.size(); i < model_vocab_size; ++i) {
      vocab.pieces.push_back("[PAD" + std::to_string(i) + "]");
      vocab.scores.push_back(0.0f);
      vocab.kinds.push_back(TokenKind::Unused);
    }
  }
  TAPML_REQUIRE(vocab.size() == model_vocab_size,
                from + ": the tokenizer has " + std::to_string(vocab.size()) +
                    " tokens, the model expects " + std::to_string(model_vocab_size));
  return Tokenizer(std::move(vocab));
}

}  // namespace tapml

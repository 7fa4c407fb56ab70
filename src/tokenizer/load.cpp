#include "tokenizer/load.h"

#include "core/error.h"
#include "format/gguf.h"

namespace tapml {

Tokenizer load_tokenizer(const std::string& tokenizer_path, const gguf::File* embedded,
                         int model_vocab_size) {
  Vocab vocab;
  if (!tokenizer_path.empty()) {
    if (gguf::File::has_magic(tokenizer_path))
      vocab = load_gguf_vocab(gguf::File::open(tokenizer_path));
    else
      vocab = load_llama2c_vocab(tokenizer_path, model_vocab_size);
  } else {
    TAPML_REQUIRE(embedded != nullptr,
                  "this model file holds no tokenizer: pass --tokenizer PATH (e.g. tokenizer.bin)");
    TAPML_REQUIRE(
        embedded->has("tokenizer.ggml.tokens"),
        embedded->path() + " holds no tokenizer (tokenizer.ggml.tokens): pass --tokenizer PATH");
    vocab = load_gguf_vocab(*embedded);
  }
  std::string from = tokenizer_path.empty() ? embedded->path() : tokenizer_path;
  TAPML_REQUIRE(vocab.size() == model_vocab_size,
                from + ": the tokenizer has " + std::to_string(vocab.size()) +
                    " tokens, the model expects " + std::to_string(model_vocab_size));
  return Tokenizer(std::move(vocab));
}

}  // namespace tapml

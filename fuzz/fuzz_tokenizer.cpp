// libFuzzer target: the tokenizer readers and the tokenizers they build. The first byte picks
// the reader for the rest: 0 a SentencePiece .model (protobuf), 1 a GGUF file's
// tokenizer.ggml.* vocabulary, 2 a Hugging Face tokenizer.json (a NUL byte, if any, starts
// its tokenizer_config.json). A reader must load or throw tapml::Error; a vocabulary it
// loads must build a Tokenizer or throw Error, and that tokenizer must encode fixed texts and
// the input itself to ids inside the vocabulary, and decode them, without a crash.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"
#include "format/gguf.h"
#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

using namespace tapml;

namespace {

volatile uint64_t sink;

std::optional<Vocab> read_vocab(uint8_t kind, const uint8_t* data, size_t size) {
  switch (kind % 3) {
    case 0:
      return parse_sentencepiece_model(data, size, "fuzz.model");
    case 1: {
      gguf::File f = gguf::File::from_memory(nullptr, data, size, "fuzz.gguf");
      return load_gguf_vocab(f);
    }
    default: {
      std::string_view all(reinterpret_cast<const char*>(data), size);
      size_t nul = all.find('\0');
      std::string_view json = all.substr(0, nul), config;
      if (nul != std::string_view::npos) config = all.substr(nul + 1);
      return parse_hf_tokenizer_json(json, config, "fuzz/tokenizer.json");
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::optional<Tokenizer> tok;
  try {
    std::optional<Vocab> v = read_vocab(data[0], data + 1, size - 1);
    tok.emplace(std::move(*v));
  } catch (const Error&) {
    return 0;
  }
  uint64_t acc = 0;
  const std::string_view texts[] = {
      "",
      " ",
      "Hello world!",
      "  two  spaces\n\nand\ttabs ",
      "caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD",
      "\xF0\x9F\xA6\x99 3333 <s></s><|endoftext|>",
      "\xFF\xC3 broken \xE2\x82",
      std::string_view(reinterpret_cast<const char*>(data), size < 512 ? size : 512)};
  for (std::string_view text : texts) {
    for (bool special : {false, true}) {
      try {
        std::vector<int> ids = tok->encode(text, special, special);
        for (int id : ids)
          if (id < 0 || id >= tok->vocab().size()) __builtin_trap();
        acc += ids.size() + tok->decode(ids).size();
      } catch (const Error&) {
        // A vocabulary may be unable to encode some text (no unknown piece to fall back on).
      }
    }
  }
  sink = acc;
  return 0;
}

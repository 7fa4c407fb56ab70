// Byte-level BPE as GPT-2 and the GGUF "gpt2" tokenizer model run it: the text is split by
// the pre-tokenizer's regular expressions into words, each word's bytes are written with
// GPT-2's byte-to-unicode table, and adjacent symbols are merged, always the pair whose merge
// comes first in the merge list (leftmost on ties), until no listed pair is left.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace tapml {

// The pre-tokenizer names tapml splits like llama.cpp does, for messages.
const std::vector<std::string>& known_bpe_pre_tokenizers();
bool is_known_bpe_pre_tokenizer(const std::string& pre);

class ByteLevelBpe {
 public:
  // Throws Error for a pre-tokenizer it does not know.
  explicit ByteLevelBpe(const Vocab& vocab);
  ~ByteLevelBpe();
  ByteLevelBpe(const ByteLevelBpe&) = delete;
  ByteLevelBpe& operator=(const ByteLevelBpe&) = delete;

  // Appends the ids of plain text (no special tokens are looked for here).
  void encode(std::string_view text, std::vector<int>& out) const;
  // The bytes a byte-level piece stands for; characters outside the table stay as they are.
  std::string decode_piece(std::string_view piece) const;
  // The words the pre-tokenizer splits `text` into (raw bytes, before byte encoding).
  std::vector<std::string> split(std::string_view text) const;

 private:
  struct Regex;
  void merge_word(const std::string& word, std::vector<int>& out) const;

  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;                  // Llama 3: a word that is a piece is taken whole
  std::unordered_map<std::string, int> ids_;    // every piece, as llama.cpp's text_to_token
  std::unordered_map<std::string, int> ranks_;  // "left right" -> position in the merges
  std::array<std::string, 256> byte_text_;      // GPT-2 byte-to-unicode, as UTF-8
  std::unordered_map<uint32_t, unsigned char> text_byte_;  // its inverse, by code point
};

}  // namespace tapml

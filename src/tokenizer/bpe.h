// BPE with ranked merges. Byte-level (GPT-2 and the GGUF "gpt2" tokenizer model): the text is
// split by the pre-tokenizer's regular expressions into words, each word's bytes are written
// with GPT-2's byte-to-unicode table, and adjacent symbols are merged, always the pair whose
// merge comes first in the merge list (leftmost on ties), until no listed pair is left.
// Gemma 4 ("gemma4") merges the same way over raw UTF-8 in which spaces are "▁", split only
// at newlines, with "<0xNN>" pieces for bytes no piece covers.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/text_model.h"
#include "tokenizer/vocab.h"

namespace tapml {

// The pre-tokenizer names tapml splits like llama.cpp does, for messages.
const std::vector<std::string>& known_bpe_pre_tokenizers();
bool is_known_bpe_pre_tokenizer(const std::string& pre);

class BpeModel : public TextModel {
 public:
  // Throws Error for a pre-tokenizer it does not know.
  explicit BpeModel(const Vocab& vocab);
  ~BpeModel() override;
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  void encode(std::string_view text, std::vector<int>& out) const override;
  // Byte-level: the bytes the piece stands for (characters outside GPT-2's table stay as
  // they are); otherwise the piece with "▁" as spaces.
  std::string piece_text(std::string_view piece) const override;
  // The words the pre-tokenizer splits `text` into (raw bytes, before byte encoding).
  std::vector<std::string> split(std::string_view text) const;

 private:
  struct Regex;
  void merge_word(const std::string& word, std::vector<int>& out) const;

  std::vector<std::unique_ptr<Regex>> regexes_;
  std::string space_;  // what a space is written as (not byte-level)
  bool byte_level_ = true;
  bool ignore_merges_ = false;       // Llama 3: a word that is a piece is taken whole
  bool whole_newlines_ = false;      // Gemma 4: a run of newlines that is a piece is taken whole
  std::array<int, 256> byte_ids_{};  // "<0xNN>" pieces (not byte-level), -1 for none
  std::unordered_map<std::string, int> ids_;    // every piece, as llama.cpp's text_to_token
  std::unordered_map<std::string, int> ranks_;  // "left right" -> position in the merges
  std::array<std::string, 256> byte_text_;      // GPT-2 byte-to-unicode, as UTF-8
  std::unordered_map<uint32_t, unsigned char> text_byte_;  // its inverse, by code point
};

}  // namespace tapml

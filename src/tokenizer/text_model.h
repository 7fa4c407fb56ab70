// One tokenization algorithm over a vocabulary's pieces: BPE (tokenizer/bpe.h), WordPiece
// (tokenizer/wordpiece.h) or unigram (tokenizer/unigram.h). The Tokenizer cuts special tokens
// out of the text first and hands each stretch between them to the model; SentencePiece BPE
// (VocabModel::Spm) stays inside the Tokenizer because its dummy prefix depends on what came
// before the stretch.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace tapml {

class TextModel {
 public:
  virtual ~TextModel() = default;
  // Appends the ids of plain text (no special tokens are looked for here).
  virtual void encode(std::string_view text, std::vector<int>& out) const = 0;
  // The text a Normal piece stands for (e.g. GPT-2 byte-to-unicode undone, "▁" as a space,
  // WordPiece's "##" dropped and a space before a word start).
  virtual std::string piece_text(std::string_view piece) const = 0;
};

// The model for `vocab.model` (not Spm). Throws Error when the vocabulary cannot drive it.
std::unique_ptr<TextModel> make_text_model(const Vocab& vocab);

}  // namespace tapml

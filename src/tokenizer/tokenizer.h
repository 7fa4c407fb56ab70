// Text to token ids and back for every vocabulary model: SentencePiece-style BPE (score-driven
// merges) with byte fallback and the dummy-prefix space, as llama2.c and llama.cpp's "llama"
// (SPM) vocabulary do it, here; the others through their TextModel (tokenizer/text_model.h).
// Special tokens are cut out of the text before the model sees it, and the text between them
// is composed (NFC) first when the vocabulary says so.
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

class Tokenizer {
 public:
  explicit Tokenizer(Vocab vocab);

  // Token ids of `text`; BOS first when add_bos. With parse_special, the text of a control
  // token (e.g. "<|endoftext|>") becomes that token; byte-level vocabularies always match
  // their user-defined tokens, as llama.cpp does.
  std::vector<int> encode(std::string_view text, bool add_bos, bool parse_special = false) const;
  // The text of one token following `prev` (drops the dummy-prefix space after BOS, turns
  // byte tokens into raw bytes).
  std::string decode_token(int prev, int token) const;
  // The text of a whole sequence, byte tokens joined back into UTF-8.
  std::string decode(const std::vector<int>& tokens) const;

  const Vocab& vocab() const { return vocab_; }

 private:
  Vocab vocab_;
  // Pieces that text can turn into by merging: Normal and UserDefined only, so a literal
  // "<s>" or "<0x0A>" in the input stays text instead of becoming a special token.
  std::unordered_map<std::string, int> index_;
  // Byte fallback: the id of piece "<0xNN>" for each byte, -1 where the vocabulary has none.
  std::array<int, 256> byte_ids_{};
  // The algorithm for every model but SentencePiece BPE, which is null here.
  std::shared_ptr<const TextModel> text_model_;
  // Control, unknown and user-defined tokens, longest text first: matched before the split.
  std::vector<int> specials_;

  std::vector<int> encode_spm(std::string_view text) const;
};

}  // namespace tapml

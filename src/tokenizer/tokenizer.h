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

  // Token ids of `text`. With add_special, framed as the vocabulary asks (add_bos: BOS
  // first, add_eos: EOS last; BERT's [CLS] ... [SEP]). With parse_special, the text of a
  // control token (e.g. "<|endoftext|>") becomes that token; user-defined tokens are always
  // matched, as llama.cpp does.
  std::vector<int> encode(std::string_view text, bool add_special,
                          bool parse_special = false) const;
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

// Decodes a sequence token by token, as generation produces it: each push returns the text
// that became certain, holding back the bytes of a UTF-8 character that the next tokens are
// still completing (byte-fallback and byte-level tokens split characters). The pushes and
// finish() together give exactly Tokenizer::decode of the whole sequence.
class TextStream {
 public:
  explicit TextStream(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int token);
  // The bytes still held at the end (an incomplete character), and a fresh start.
  std::string finish();

 private:
  const Tokenizer& tok_;
  std::string held_;
  int prev_ = -1;
  bool text_started_ = false;  // a token after the leading BOS has been seen
};

}  // namespace tapml

// WordPiece (BERT) as llama.cpp's WPM tokenizer runs it on GGUF "bert" vocabularies.
//
// The text is normalized and split into words: with strip_accents every character is put in
// canonical decomposition (NFD) and nonspacing marks (Mn) are dropped; with lowercase every
// character takes its simple lowercase mapping; whitespace ends a word; control and format
// characters, U+0000 and U+FFFD (and malformed UTF-8) are dropped; every punctuation character,
// ASCII symbol and CJK ideograph is a word of its own. Each word is then cut greedily from the
// left into the longest pieces the vocabulary has, a word-start piece first and continuation
// pieces after it; when some position has no piece, the whole word becomes the unknown token.
//
// Two spellings of the pieces are understood:
//  - Marker: llama.cpp's converter writes a word start with the vocabulary's space symbol
//    ("▁the") and a continuation bare ("ing"). Matching then runs, as in llama.cpp, on the
//    bytes of "▁" + word against every piece, so continuations may also be any piece that
//    happens to equal the text (a literal "▁" inside a word can start a word-start piece).
//  - Hashes: Hugging Face's vocab.txt writes a word start bare ("the") and a continuation
//    with "##" ("##ing").
// Auto picks the spelling from the pieces: Marker when at least as many pieces start with the
// space symbol as with "##", Hashes otherwise.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/text_model.h"
#include "tokenizer/vocab.h"

namespace tapml {

class WordPieceModel : public TextModel {
 public:
  enum class Spelling { Auto, Marker, Hashes };

  // Throws Error when the vocabulary has no word-start pieces in the chosen spelling (or, for
  // Auto, neither "▁"-prefixed nor "##"-prefixed pieces).
  explicit WordPieceModel(const Vocab& vocab, Spelling spelling = Spelling::Auto);

  void encode(std::string_view text, std::vector<int>& out) const override;
  // Marker: "▁the" -> " the", "ing" -> "ing". Hashes: "the" -> " the", "##ing" -> "ing".
  std::string piece_text(std::string_view piece) const override;

  Spelling spelling() const { return spelling_; }
  // The normalized words of `text`, before they are cut into pieces (UTF-8).
  std::vector<std::string> split(std::string_view text) const;

 private:
  // A byte trie of piece texts: each node lists its children as a run of edges sorted by byte.
  struct Trie {
    struct Node {
      uint32_t first_edge = 0, edge_count = 0;
      int id = -1;  // the piece that ends here
    };
    std::vector<Node> nodes;
    std::vector<uint8_t> labels;    // per edge
    std::vector<uint32_t> targets;  // per edge

    // `keys` sorted, unique.
    void build(const std::vector<std::pair<std::string, int>>& keys);
    // The longest key that is a prefix of `text`: its id and length, {-1, 0} for none (the
    // empty key counts when present).
    std::pair<int, size_t> longest_prefix(std::string_view text) const;
  };

  void encode_word(std::string_view word, std::vector<int>& out) const;

  Spelling spelling_ = Spelling::Marker;
  std::string space_;  // the word-start marker (Marker spelling)
  bool lowercase_ = false, strip_accents_ = false;
  int unk_ = 0;
  Trie starts_;         // word-start pieces by the text they cover
  Trie continuations_;  // pieces that may follow inside a word
};

}  // namespace tapml

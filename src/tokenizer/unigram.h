// SentencePiece's unigram tokenizer, as the sentencepiece library runs it (its optimized
// Viterbi encoder, the default since 0.1.9): the text is normalized (the precompiled
// character map, extra whitespace removed, the dummy-prefix "▁", spaces escaped as "▁"),
// then split into the pieces whose scores sum highest. A character no piece covers costs
// the lowest piece score minus 10 and becomes the unknown token, a run of them one unknown
// token, or byte pieces "<0xNN>" when the vocabulary has them.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/text_model.h"
#include "tokenizer/vocab.h"

namespace tapml {

// SentencePiece's precompiled character map: a little-endian uint32 with the size of the
// trie in bytes, the trie (a darts-clone double array of uint32 units over UTF-8 keys), and
// the NUL-terminated replacement strings the trie's values point into. The constructor walks
// every node the trie can reach, so that no lookup can leave the blob.
class PrecompiledCharsMap {
 public:
  PrecompiledCharsMap() = default;
  // An empty blob maps nothing. Throws Error("WHERE: the precompiled charsmap ...") when the
  // blob is malformed.
  PrecompiledCharsMap(std::string_view blob, const std::string& where);

  bool empty() const { return units_.empty(); }
  // The longest key that `text` starts with: its length in bytes (0 when none) and the
  // replacement, which stays valid as long as the map.
  std::pair<size_t, std::string_view> longest_match(std::string_view text) const;

 private:
  std::vector<uint32_t> units_;
  std::string strings_;
};

class UnigramModel : public TextModel {
 public:
  // Throws Error when the vocabulary cannot drive it (sizes differ, the unknown id is out of
  // range, the charsmap is malformed).
  explicit UnigramModel(const Vocab& vocab);

  void encode(std::string_view text, std::vector<int>& out) const override;
  // The piece with "▁" as spaces.
  std::string piece_text(std::string_view piece) const override;
  // The text the segmentation runs on (what SentencePiece's pieces concatenate to).
  std::string normalize(std::string_view text) const;

 private:
  // A byte trie over pieces, children sorted by byte in one flat array.
  class Trie {
   public:
    void build(std::vector<std::pair<std::string_view, int>> keys);
    bool empty() const { return nodes_.size() <= 1; }
    // The child of `node` for byte `c`, or -1.
    int child(int node, unsigned char c) const;
    int value(int node) const { return nodes_[size_t(node)].value; }

   private:
    struct Node {
      int value = -1;
      uint32_t first = 0, count = 0;  // children: edges [first, first + count)
    };
    std::vector<Node> nodes_{Node{}};
    std::vector<unsigned char> edge_bytes_;
    std::vector<int> edge_nodes_;
  };

  // The normalized form of the text at `pos` and how many input bytes it stands for.
  std::pair<std::string_view, size_t> normalize_prefix(std::string_view text, size_t pos) const;

  std::vector<float> scores_;
  std::vector<TokenKind> kinds_;
  int unk_ = 0;
  float min_score_ = 0, max_score_ = 0;  // over Normal pieces, as SentencePiece keeps them
  Trie pieces_trie_;                     // Normal and UserDefined pieces
  Trie user_defined_trie_;               // kept verbatim by the normalizer
  PrecompiledCharsMap charsmap_;
  bool byte_fallback_ = false;
  std::array<int, 256> byte_ids_{};  // "<0xNN>" pieces, -1 where missing
  std::string space_;
  bool add_dummy_prefix_ = true, remove_extra_whitespaces_ = true, escape_whitespaces_ = true,
       treat_whitespace_as_suffix_ = false;
};

}  // namespace tapml

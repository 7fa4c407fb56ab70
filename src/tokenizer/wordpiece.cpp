// WordPiece: BERT's normalizer and word split, then greedy longest-match pieces per word.
//
// Where this follows llama.cpp's WPM tokenizer and where it does not (all outside what its
// test vectors exercise):
//  - Whitespace is Unicode's White_Space set as llama.cpp has it: categories Zs, Zl, Zp and
//    U+0009..U+000D, U+0085 (so \v and \f split words, where Hugging Face's Python BERT drops
//    them as control characters).
//  - Dropped: categories Cc, Cf, Co, Cs, and U+FFFD; unassigned code points (Cn) stay, as in
//    llama.cpp, and utf8proc's Unicode version decides what is unassigned.
//  - Accents: llama.cpp replaces each character by the first code point of its NFD and drops
//    every mark (Mn, Mc, Me); here the full canonical decomposition is kept and only Mn is
//    dropped, as Hugging Face's BertNormalizer does. The two agree on Latin, Greek and Cyrillic
//    text; they differ on Hangul syllables (llama.cpp keeps only the leading jamo, here all
//    jamo stay) and on spacing marks (Mc, e.g. Devanagari vowel signs, which llama.cpp drops).
//    Canonical reordering of marks is not done; it only reorders marks among themselves.
//  - Lowercase is the simple (one code point) mapping of UnicodeData, in both.
//  - Malformed UTF-8 bytes are dropped one at a time; llama.cpp also decodes overlong forms.
//  - CJK ideographs: the ranges of llama.cpp and Hugging Face's tokenizers (which start
//    Extension E's range at U+2B920).
#include "tokenizer/wordpiece.h"

#include <utf8proc.h>

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "core/error.h"

namespace tapml {

namespace {

const std::string_view kHashes = "##";

bool is_whitespace(int32_t cp, utf8proc_category_t cat) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cat == UTF8PROC_CATEGORY_ZS ||
         cat == UTF8PROC_CATEGORY_ZL || cat == UTF8PROC_CATEGORY_ZP;
}

bool is_dropped(int32_t cp, utf8proc_category_t cat) {
  return cp == 0 || cp == 0xFFFD || cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_CO || cat == UTF8PROC_CATEGORY_CS;
}

bool is_punctuation(utf8proc_category_t cat) {
  return cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
}

bool is_symbol(utf8proc_category_t cat) {
  return cat >= UTF8PROC_CATEGORY_SM && cat <= UTF8PROC_CATEGORY_SO;
}

bool is_cjk_ideograph(int32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// Calls on_word(std::string_view) for each normalized word of `text`, in order.
template <typename OnWord>
void for_each_word(std::string_view text, bool lowercase, bool strip_accents, OnWord&& on_word) {
  std::string word;
  auto finish = [&] {
    if (!word.empty()) on_word(std::string_view(word));
    word.clear();
  };
  auto append = [&](int32_t cp) {
    utf8proc_uint8_t buf[4];
    utf8proc_ssize_t n = utf8proc_encode_char(cp, buf);
    word.append(reinterpret_cast<const char*>(buf), size_t(n));
  };
  auto add = [&](int32_t cp) {
    const utf8proc_category_t cat = utf8proc_category(cp);
    if (is_whitespace(cp, cat)) {
      finish();
      return;
    }
    if (is_dropped(cp, cat) || (strip_accents && cat == UTF8PROC_CATEGORY_MN)) return;
    const int32_t c = lowercase ? utf8proc_tolower(cp) : cp;
    if (is_punctuation(cat) || (cp < 0x7F && is_symbol(cat)) || is_cjk_ideograph(cp)) {
      finish();
      append(c);
      finish();
    } else {
      append(c);
    }
  };

  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  const auto size = utf8proc_ssize_t(text.size());
  for (utf8proc_ssize_t pos = 0; pos < size;) {
    int32_t cp = -1;
    utf8proc_ssize_t n = utf8proc_iterate(bytes + pos, size - pos, &cp);
    if (n <= 0) {  // malformed: drop one byte and resynchronize
      ++pos;
      continue;
    }
    pos += n;
    if (!strip_accents) {
      add(cp);
      continue;
    }
    // Canonical decompositions are at most 4 code points long.
    int32_t parts[8];
    int boundclass = 0;
    utf8proc_ssize_t m = utf8proc_decompose_char(cp, parts, 8, UTF8PROC_DECOMPOSE, &boundclass);
    if (m <= 0 || m > 8) {
      add(cp);
      continue;
    }
    for (utf8proc_ssize_t i = 0; i < m; ++i) add(parts[i]);
  }
  finish();
}

}  // namespace

void WordPieceModel::Trie::build(const std::vector<std::pair<std::string, int>>& keys) {
  nodes.assign(1, Node{});
  labels.clear();
  targets.clear();
  // Depth-first over ranges of the sorted keys that share a prefix; an explicit stack, since a
  // piece may be long.
  struct Range {
    uint32_t node;
    size_t lo, hi, depth;
  };
  std::vector<Range> stack{{0, 0, keys.size(), 0}};
  while (!stack.empty()) {
    Range r = stack.back();
    stack.pop_back();
    if (r.lo < r.hi && keys[r.lo].first.size() == r.depth) nodes[r.node].id = keys[r.lo++].second;
    const auto first_edge = uint32_t(labels.size());
    for (size_t i = r.lo; i < r.hi;) {
      const auto byte = static_cast<uint8_t>(keys[i].first[r.depth]);
      size_t j = i;
      while (j < r.hi && static_cast<uint8_t>(keys[j].first[r.depth]) == byte) ++j;
      const auto child = uint32_t(nodes.size());
      nodes.push_back(Node{});
      labels.push_back(byte);
      targets.push_back(child);
      stack.push_back({child, i, j, r.depth + 1});
      i = j;
    }
    nodes[r.node].first_edge = first_edge;
    nodes[r.node].edge_count = uint32_t(labels.size()) - first_edge;
  }
}

std::pair<int, size_t> WordPieceModel::Trie::longest_prefix(std::string_view text) const {
  std::pair<int, size_t> best{nodes[0].id, 0};
  uint32_t node = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const Node& n = nodes[node];
    const auto begin = labels.begin() + n.first_edge, end = begin + n.edge_count;
    const auto byte = static_cast<uint8_t>(text[i]);
    auto it = std::lower_bound(begin, end, byte);
    if (it == end || *it != byte) break;
    node = targets[size_t(it - labels.begin())];
    if (nodes[node].id >= 0) best = {nodes[node].id, i + 1};
  }
  if (best.first < 0) best.second = 0;
  return best;
}

WordPieceModel::WordPieceModel(const Vocab& vocab, Spelling spelling)
    : space_(vocab.space),
      lowercase_(vocab.lowercase),
      strip_accents_(vocab.strip_accents),
      unk_(vocab.unk) {
  TAPML_REQUIRE(!space_.empty(), "tokenizer: the WordPiece vocabulary's space symbol is empty");
  TAPML_REQUIRE(unk_ >= 0 && unk_ < vocab.size(),
                "tokenizer: the WordPiece vocabulary has no unknown token");
  if (spelling == Spelling::Auto) {
    size_t marked = 0, hashed = 0;
    for (const std::string& p : vocab.pieces) {
      marked += p.starts_with(space_);
      hashed += p.size() > kHashes.size() && p.starts_with(kHashes);
    }
    TAPML_REQUIRE(marked > 0 || hashed > 0,
                  "tokenizer: the WordPiece vocabulary has no pieces starting with \"" + space_ +
                      "\" (word starts) or \"##\" (continuations)");
    spelling = marked >= hashed ? Spelling::Marker : Spelling::Hashes;
  }
  spelling_ = spelling;

  // Later duplicates win, as in llama.cpp's text-to-token map.
  std::unordered_map<std::string, int> starts, continuations;
  for (int id = 0; id < vocab.size(); ++id) {
    const std::string& p = vocab.pieces[size_t(id)];
    if (spelling_ == Spelling::Marker) {
      // llama.cpp matches "▁" + word byte by byte against every piece: a word start is a
      // piece with the marker (a lone "▁" included), a continuation any piece.
      if (p.starts_with(space_)) starts.insert_or_assign(p.substr(space_.size()), id);
      if (!p.empty()) continuations.insert_or_assign(p, id);
    } else {
      if (p.size() > kHashes.size() && p.starts_with(kHashes))
        continuations.insert_or_assign(p.substr(kHashes.size()), id);
      if (!p.empty()) starts.insert_or_assign(p, id);
    }
  }
  TAPML_REQUIRE(!starts.empty(), "tokenizer: the WordPiece vocabulary has no word-start pieces" +
                                     std::string(spelling_ == Spelling::Marker
                                                     ? " (none starts with \"" + space_ + "\")"
                                                     : ""));
  auto build = [](Trie& trie, std::unordered_map<std::string, int>& map) {
    std::vector<std::pair<std::string, int>> keys(std::make_move_iterator(map.begin()),
                                                  std::make_move_iterator(map.end()));
    std::sort(keys.begin(), keys.end());
    trie.build(keys);
  };
  build(starts_, starts);
  build(continuations_, continuations);
}

void WordPieceModel::encode_word(std::string_view word, std::vector<int>& out) const {
  const size_t first = out.size();
  std::pair<int, size_t> match = starts_.longest_prefix(word);
  if (match.first < 0) {
    out.push_back(unk_);
    return;
  }
  out.push_back(match.first);
  // Every step consumes at least one byte and walks no further than the longest piece, so a
  // word costs O(length * longest piece).
  for (size_t pos = match.second; pos < word.size(); pos += match.second) {
    match = continuations_.longest_prefix(word.substr(pos));
    if (match.first < 0 || match.second == 0) {
      out.resize(first);
      out.push_back(unk_);
      return;
    }
    out.push_back(match.first);
  }
}

void WordPieceModel::encode(std::string_view text, std::vector<int>& out) const {
  for_each_word(text, lowercase_, strip_accents_,
                [&](std::string_view word) { encode_word(word, out); });
}

std::vector<std::string> WordPieceModel::split(std::string_view text) const {
  std::vector<std::string> words;
  for_each_word(text, lowercase_, strip_accents_,
                [&](std::string_view word) { words.emplace_back(word); });
  return words;
}

std::string WordPieceModel::piece_text(std::string_view piece) const {
  if (spelling_ == Spelling::Marker) {
    if (piece.starts_with(space_)) return " " + std::string(piece.substr(space_.size()));
    return std::string(piece);
  }
  if (piece.size() > kHashes.size() && piece.starts_with(kHashes))
    return std::string(piece.substr(kHashes.size()));
  return " " + std::string(piece);
}

}  // namespace tapml

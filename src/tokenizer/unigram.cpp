#include "tokenizer/unigram.h"

#include <algorithm>
#include <cfloat>
#include <deque>

#include "core/error.h"
#include "tokenizer/pieces.h"
#include "tokenizer/utf8.h"

namespace tapml {

namespace {

// darts-clone's unit layout: bits 0-7 the label (bit 31 set on value units, so that they
// never match a label), bit 8 "has a leaf", bits 10-30 the offset to the children, scaled by
// 256 when bit 9 is set; a value unit holds the value in bits 0-30.
uint32_t unit_offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }
uint32_t unit_label(uint32_t u) { return u & ((1u << 31) | 0xFFu); }
bool unit_has_leaf(uint32_t u) { return ((u >> 8) & 1u) != 0; }
uint32_t unit_value(uint32_t u) { return u & ((1u << 31) - 1); }

// A charsmap larger than this is refused: real ones are a few hundred KiB, and checking one
// costs 256 probes per trie node.
constexpr size_t kMaxCharsMapBytes = size_t(16) << 20;

// SentencePiece's character length from the first byte alone (string_util::OneCharLen).
size_t one_char_len(unsigned char c) {
  if (c < 0xC0) return 1;
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  return 4;
}

}  // namespace

PrecompiledCharsMap::PrecompiledCharsMap(std::string_view blob, const std::string& where) {
  if (blob.empty()) return;
  const std::string what = where + ": the precompiled charsmap";
  TAPML_REQUIRE(blob.size() <= kMaxCharsMapBytes,
                what + " has " + std::to_string(blob.size()) + " bytes, more than the " +
                    std::to_string(kMaxCharsMapBytes) + " tapml accepts");
  TAPML_REQUIRE(blob.size() >= 8, what + " has " + std::to_string(blob.size()) +
                                      " bytes, too few for a trie size and a root");
  uint32_t trie_bytes = 0;
  for (int i = 3; i >= 0; --i) trie_bytes = (trie_bytes << 8) | static_cast<unsigned char>(blob[i]);
  TAPML_REQUIRE(trie_bytes >= 4 && trie_bytes % 4 == 0 && trie_bytes <= blob.size() - 4,
                what + " declares a trie of " + std::to_string(trie_bytes) +
                    " bytes in a blob of " + std::to_string(blob.size()) +
                    " (needs a multiple of 4 that fits)");
  units_.resize(trie_bytes / 4);
  for (size_t i = 0; i < units_.size(); ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(blob.data()) + 4 + 4 * i;
    units_[i] = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  }
  strings_.assign(blob.substr(4 + size_t(trie_bytes)));
  const size_t last_nul = strings_.rfind('\0');

  // Walk every node reachable from the root (each node's children lie at base ^ c for the
  // 256 bytes c) and check that every leaf's value unit lies in the trie and its value
  // starts a NUL-terminated string. Visiting each base once bounds the walk even when a
  // hostile trie shares or loops its nodes.
  const size_t n = units_.size();
  std::vector<bool> seen(n + 256, false);
  std::vector<uint32_t> todo;
  auto visit = [&](uint32_t base) {
    if ((base & ~0xFFu) >= n || seen[base]) return;  // done, or no child can lie in the trie
    seen[base] = true;
    todo.push_back(base);
  };
  visit(unit_offset(units_[0]));
  while (!todo.empty()) {
    const uint32_t base = todo.back();
    todo.pop_back();
    for (uint32_t c = 0; c < 256; ++c) {
      const uint32_t id = base ^ c;
      if (id >= n || unit_label(units_[id]) != c) continue;
      const uint32_t next = id ^ unit_offset(units_[id]);
      if (unit_has_leaf(units_[id])) {
        TAPML_REQUIRE(next < n, what + "'s trie unit " + std::to_string(id) +
                                    " has its value at unit " + std::to_string(next) +
                                    ", past its " + std::to_string(n) + " units");
        const uint32_t value = unit_value(units_[next]);
        TAPML_REQUIRE(last_nul != std::string::npos && value <= last_nul,
                      what + "'s trie unit " + std::to_string(id) + " points to replacement " +
                          std::to_string(value) + ", outside its " +
                          std::to_string(strings_.size()) + " bytes of NUL-terminated strings");
      }
      visit(next);
    }
  }
}

std::pair<size_t, std::string_view> PrecompiledCharsMap::longest_match(
    std::string_view text) const {
  size_t best_len = 0;
  uint32_t best_value = 0;
  if (units_.empty()) return {0, {}};
  const size_t n = units_.size();
  uint32_t id = unit_offset(units_[0]);
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    id ^= c;
    if (id >= n || unit_label(units_[id]) != c) break;
    const bool leaf = unit_has_leaf(units_[id]);
    id ^= unit_offset(units_[id]);
    if (leaf) {
      if (id >= n) break;  // refused by the constructor; kept so no lookup can overrun
      best_len = i + 1;
      best_value = unit_value(units_[id]);
    }
  }
  if (best_len == 0 || best_value >= strings_.size()) return {0, {}};
  const size_t end = strings_.find('\0', best_value);
  if (end == std::string::npos) return {0, {}};
  return {best_len, std::string_view(strings_).substr(best_value, end - best_value)};
}

void UnigramModel::Trie::build(std::vector<std::pair<std::string_view, int>> keys) {
  // Sorted, equal keys keep their order so that the last of them wins, as a map would.
  std::stable_sort(keys.begin(), keys.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  nodes_.assign(1, Node{});
  edge_bytes_.clear();
  edge_nodes_.clear();
  struct Range {
    int node;
    size_t lo, hi, depth;  // keys[lo, hi) share their first `depth` bytes: the node's key
  };
  std::deque<Range> todo{{0, 0, keys.size(), 0}};
  while (!todo.empty()) {
    const Range r = todo.front();
    todo.pop_front();
    size_t i = r.lo;
    for (; i < r.hi && keys[i].first.size() == r.depth; ++i)
      nodes_[size_t(r.node)].value = keys[i].second;
    // Children in byte order, all at once, so that a node's edges are contiguous.
    const auto first = uint32_t(edge_bytes_.size());
    while (i < r.hi) {
      const auto c = static_cast<unsigned char>(keys[i].first[r.depth]);
      size_t j = i;
      while (j < r.hi && static_cast<unsigned char>(keys[j].first[r.depth]) == c) ++j;
      const int child = int(nodes_.size());
      nodes_.push_back(Node{});
      edge_bytes_.push_back(c);
      edge_nodes_.push_back(child);
      todo.push_back({child, i, j, r.depth + 1});
      i = j;
    }
    nodes_[size_t(r.node)].first = first;
    nodes_[size_t(r.node)].count = uint32_t(edge_bytes_.size()) - first;
  }
}

int UnigramModel::Trie::child(int node, unsigned char c) const {
  const Node& n = nodes_[size_t(node)];
  const unsigned char* begin = edge_bytes_.data() + n.first;
  const unsigned char* end = begin + n.count;
  const unsigned char* it = std::lower_bound(begin, end, c);
  if (it == end || *it != c) return -1;
  return edge_nodes_[size_t(it - edge_bytes_.data())];
}

UnigramModel::UnigramModel(const Vocab& vocab)
    : scores_(vocab.scores),
      kinds_(vocab.kinds),
      unk_(vocab.unk),
      charsmap_(vocab.charsmap, "tokenizer"),
      space_(vocab.space),
      add_dummy_prefix_(vocab.add_space_prefix),
      remove_extra_whitespaces_(vocab.remove_extra_whitespaces),
      escape_whitespaces_(vocab.escape_whitespaces),
      treat_whitespace_as_suffix_(vocab.treat_whitespace_as_suffix) {
  const size_t n = vocab.pieces.size();
  TAPML_REQUIRE(n > 0, "tokenizer: the unigram vocabulary is empty");
  TAPML_REQUIRE(n <= size_t(INT32_MAX), "tokenizer: the unigram vocabulary is too large");
  TAPML_REQUIRE(scores_.size() == n && kinds_.size() == n,
                "tokenizer: the unigram vocabulary has " + std::to_string(n) + " pieces but " +
                    std::to_string(scores_.size()) + " scores and " +
                    std::to_string(kinds_.size()) + " kinds");
  TAPML_REQUIRE(unk_ >= 0 && size_t(unk_) < n,
                "tokenizer: a unigram vocabulary needs an unknown token; its id " +
                    std::to_string(unk_) + " is outside the " + std::to_string(n) + " pieces");
  TAPML_REQUIRE(!space_.empty(), "tokenizer: the vocabulary's space symbol is empty");

  // SentencePiece starts the maximum at FLT_MIN, the smallest positive float, so with the
  // usual negative scores a user-defined piece is worth length * FLT_MIN - 0.1.
  min_score_ = FLT_MAX;
  max_score_ = FLT_MIN;
  byte_ids_.fill(-1);
  std::vector<std::pair<std::string_view, int>> normal, user_defined;
  for (size_t i = 0; i < n; ++i) {
    const std::string& piece = vocab.pieces[i];
    switch (kinds_[i]) {
      case TokenKind::Normal:
        min_score_ = std::min(min_score_, scores_[i]);
        max_score_ = std::max(max_score_, scores_[i]);
        if (!piece.empty()) normal.emplace_back(piece, int(i));
        break;
      case TokenKind::UserDefined:
        if (!piece.empty()) {
          normal.emplace_back(piece, int(i));
          user_defined.emplace_back(piece, int(i));
        }
        break;
      case TokenKind::Byte: {
        const int b = byte_of_piece(piece);
        if (b >= 0) {
          byte_ids_[size_t(b)] = int(i);
          byte_fallback_ = true;
        }
        break;
      }
      case TokenKind::Unknown:
      case TokenKind::Control:
      case TokenKind::Unused:
        break;
    }
  }
  pieces_trie_.build(std::move(normal));
  user_defined_trie_.build(std::move(user_defined));
}

std::pair<std::string_view, size_t> UnigramModel::normalize_prefix(std::string_view text,
                                                                   size_t pos) const {
  std::string_view rest = text.substr(pos);
  // User-defined pieces stay as they are, longest first.
  if (!user_defined_trie_.empty()) {
    size_t longest = 0;
    int node = 0;
    for (size_t i = 0; i < rest.size(); ++i) {
      node = user_defined_trie_.child(node, static_cast<unsigned char>(rest[i]));
      if (node < 0) break;
      if (user_defined_trie_.value(node) >= 0) longest = i + 1;
    }
    if (longest > 0) return {rest.substr(0, longest), longest};
  }
  if (auto [len, replacement] = charsmap_.longest_match(rest); len > 0) return {replacement, len};
  const size_t len = valid_char_len(text, pos);
  if (len == 0) return {"\xEF\xBF\xBD", 1};  // one malformed byte becomes U+FFFD
  return {rest.substr(0, len), len};
}

std::string UnigramModel::normalize(std::string_view text) const {
  std::string out;
  size_t pos = 0;
  // Leading spaces go, and so does text that is nothing but spaces.
  if (remove_extra_whitespaces_) {
    while (pos < text.size()) {
      auto [sp, len] = normalize_prefix(text, pos);
      if (sp != " ") break;
      pos += len;
    }
  }
  if (pos == text.size()) return out;
  out.reserve((text.size() - pos) * 3);
  const std::string_view space = escape_whitespaces_ ? std::string_view(space_) : " ";
  if (add_dummy_prefix_ && !treat_whitespace_as_suffix_) out += space;

  bool prev_space = remove_extra_whitespaces_;
  while (pos < text.size()) {
    auto [sp, len] = normalize_prefix(text, pos);
    // After a space, the spaces a normalized character starts with go.
    while (prev_space && !sp.empty() && sp.front() == ' ') sp.remove_prefix(1);
    if (!sp.empty()) {
      for (char c : sp) {
        if (c == ' ')
          out += space;
        else
          out += c;
      }
      prev_space = sp.back() == ' ';
    }
    pos += len;
    if (!remove_extra_whitespaces_) prev_space = false;
  }
  if (remove_extra_whitespaces_) {
    while (out.size() >= space.size() && out.ends_with(space))
      out.resize(out.size() - space.size());
  }
  if (add_dummy_prefix_ && treat_whitespace_as_suffix_) out += space;
  return out;
}

void UnigramModel::encode(std::string_view text, std::vector<int>& out) const {
  const std::string normalized = normalize(text);
  if (normalized.empty()) return;
  TAPML_REQUIRE(
      normalized.size() < size_t(INT32_MAX),
      "tokenizer: text of " + std::to_string(text.size()) + " bytes is too long to encode");
  const int size = int(normalized.size());

  // Viterbi over byte positions, as SentencePiece's optimized encoder: best[e] is the best
  // segmentation of normalized[0, e) and the piece that ends it. Ties keep the first
  // candidate found (the earliest start, then the shortest piece). The arithmetic follows
  // SentencePiece's types: float sums, compared in double for pieces, in float for unknowns.
  struct Best {
    int id = -1;
    float score = 0;
    int start = -1;
  };
  std::vector<Best> best(size_t(size) + 1);
  const float unk_score = min_score_ - 10.0f;
  for (int start = 0; start < size;) {
    const float so_far = best[size_t(start)].score;
    const int char_len = std::min(
        int(one_char_len(static_cast<unsigned char>(normalized[size_t(start)]))), size - start);
    bool covers_char = false;
    int node = 0;
    for (int end = start + 1; end <= size; ++end) {
      node = pieces_trie_.child(node, static_cast<unsigned char>(normalized[size_t(end - 1)]));
      if (node < 0) break;
      const int id = pieces_trie_.value(node);
      if (id < 0) continue;
      const int length = end - start;
      const double score = kinds_[size_t(id)] == TokenKind::UserDefined
                               ? double(float(length) * max_score_) - 0.1
                               : double(scores_[size_t(id)]);
      const double candidate = score + double(so_far);
      Best& target = best[size_t(end)];
      if (target.start == -1 || candidate > double(target.score)) {
        target = {id, float(candidate), start};
      }
      if (length == char_len) covers_char = true;
    }
    if (!covers_char) {
      Best& target = best[size_t(start + char_len)];
      const float candidate = unk_score + so_far;
      if (target.start == -1 || candidate > target.score) target = {unk_, candidate, start};
    }
    start += char_len;
  }

  std::vector<int> path;  // ends of the pieces, last first
  for (int end = size; end > 0; end = best[size_t(end)].start) path.push_back(end);
  bool prev_unknown = false;
  for (auto it = path.rbegin(); it != path.rend(); ++it) {
    const Best& b = best[size_t(*it)];
    const bool unknown = b.id == unk_;
    if (unknown && byte_fallback_) {
      for (int i = b.start; i < *it; ++i) {
        const int id = byte_ids_[static_cast<unsigned char>(normalized[size_t(i)])];
        out.push_back(id >= 0 ? id : unk_);
      }
    } else if (!(unknown && prev_unknown)) {
      out.push_back(b.id);  // a run of unknown characters is one unknown token
    }
    prev_unknown = unknown;
  }
}

std::string UnigramModel::piece_text(std::string_view piece) const {
  std::string text;
  text.reserve(piece.size());
  for (size_t pos = 0; pos < piece.size();) {
    if (piece.compare(pos, space_.size(), space_) == 0) {
      text += ' ';
      pos += space_.size();
    } else {
      text += piece[pos++];
    }
  }
  return text;
}

}  // namespace tapml

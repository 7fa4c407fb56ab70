// The merge loop that SentencePiece-style and byte-level BPE share: a text starts as one symbol
// per character, and the best adjacent pair is merged until no pair may be, with a queue whose
// stale entries (a side merged since) are skipped. The two differ only in what a pair is worth.
#pragma once
#include <cstdint>
#include <optional>
#include <queue>
#include <string_view>
#include <utility>
#include <vector>

namespace tapml {

// A span of the text: where a final symbol starts and how many bytes it covers.
struct Span {
  uint32_t start, len;
};

// `char_len(text, pos)` is the byte length of the character at pos (>= 1); `priority(a, b)`
// the priority (a float: exact for piece scores and for merge ranks below 2^24) of merging
// the adjacent spans a and b, lower first (ties: the leftmost pair),
// or nullopt when they may not merge. Returns the final symbols in order. `text` must be
// shorter than 4 GiB.
template <class CharLen, class Priority>
std::vector<Span> merge_pairs(std::string_view text, CharLen char_len, Priority priority) {
  struct Symbol {
    Span span;  // len 0: merged into its left neighbour
    int prev, next;
  };
  struct Pair {
    float priority;  // 16-byte entries: the queue's memory traffic is most of the time
    int left, right;
    uint32_t size;  // left + right when queued; differs once either side has changed
  };
  struct Later {
    bool operator()(const Pair& a, const Pair& b) const {
      return a.priority > b.priority || (a.priority == b.priority && a.left > b.left);
    }
  };
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    size_t len = char_len(text, pos);
    int index = int(symbols.size());
    symbols.push_back(
        {{uint32_t(pos), uint32_t(len)}, index - 1, pos + len == text.size() ? -1 : index + 1});
    pos += len;
  }
  std::vector<Pair> storage;
  storage.reserve(symbols.size());
  std::priority_queue<Pair, std::vector<Pair>, Later> queue(Later{}, std::move(storage));
  auto consider = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const Span& a = symbols[size_t(left)].span;
    const Span& b = symbols[size_t(right)].span;
    if (std::optional<float> p = priority(a, b)) queue.push({*p, left, right, a.len + b.len});
  };
  for (int i = 1; i < int(symbols.size()); ++i) consider(i - 1, i);
  while (!queue.empty()) {
    Pair g = queue.top();
    queue.pop();
    Symbol& left = symbols[size_t(g.left)];
    Symbol& right = symbols[size_t(g.right)];
    if (left.span.len == 0 || right.span.len == 0 || left.span.len + right.span.len != g.size)
      continue;
    left.span.len += right.span.len;
    right.span.len = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[size_t(right.next)].prev = g.left;
    consider(left.prev, g.left);
    consider(g.left, left.next);
  }
  std::vector<Span> out;
  if (symbols.empty()) return out;
  for (int i = 0; i >= 0; i = symbols[size_t(i)].next) out.push_back(symbols[size_t(i)].span);
  return out;
}

}  // namespace tapml

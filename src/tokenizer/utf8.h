// UTF-8 facts the tokenizers share.
#pragma once
#include <cstddef>
#include <string_view>

namespace tapml {

// Length of the well-formed UTF-8 character at text[pos], or 0 when it is not one (a stray
// continuation byte, a cut sequence, an overlong form, a surrogate, a code point past
// U+10FFFF).
inline size_t valid_char_len(std::string_view text, size_t pos) {
  auto b = [&](size_t i) { return static_cast<unsigned char>(text[pos + i]); };
  auto trail = [&](size_t i) { return (b(i) & 0xC0) == 0x80; };
  const size_t left = text.size() - pos;
  const unsigned char c0 = b(0);
  if (c0 < 0x80) return 1;
  if (c0 >= 0xC2 && c0 <= 0xDF) return left >= 2 && trail(1) ? 2 : 0;
  if (c0 >= 0xE0 && c0 <= 0xEF) {
    if (left < 3 || !trail(1) || !trail(2)) return 0;
    if (c0 == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c0 == 0xED && b(1) > 0x9F) return 0;  // surrogates
    return 3;
  }
  if (c0 >= 0xF0 && c0 <= 0xF4) {
    if (left < 4 || !trail(1) || !trail(2) || !trail(3)) return 0;
    if (c0 == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c0 == 0xF4 && b(1) > 0x8F) return 0;  // past U+10FFFF
    return 4;
  }
  return 0;
}

inline bool valid_utf8(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = valid_char_len(text, pos);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

}  // namespace tapml

// Small facts about pieces that every vocabulary reader and tokenizer shares.
#pragma once
#include <string_view>

namespace tapml {

// The byte a "<0xNN>" piece stands for (SentencePiece's and llama.cpp's byte-fallback
// pieces; upper- or lowercase hex digits), or -1 when the piece is not one.
inline int byte_of_piece(std::string_view piece) {
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = hex(piece[3]), lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace tapml

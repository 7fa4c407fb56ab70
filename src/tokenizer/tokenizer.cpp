// SentencePiece-style BPE as llama.cpp's SPM tokenizer and llama2.c run it: characters are
// merged pairwise, always the adjacent pair whose concatenation is the best-scoring piece
// (leftmost on ties), until no pair forms a piece; what is left becomes ids, with byte
// fallback for characters the vocabulary lacks.
#include "tokenizer/tokenizer.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "tokenizer/merge.h"

namespace tapml {

namespace {

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the well-formed UTF-8 character at s[pos], or 1 when it is not one, so that a
// stray byte becomes a symbol of its own (and falls back to a byte token) instead of
// swallowing the valid characters after it.
size_t utf8_char_len(std::string_view s, size_t pos) {
  auto c0 = static_cast<unsigned char>(s[pos]);
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c0 < 0x80)
    return 1;
  else if (c0 >= 0xC2 && c0 <= 0xDF)
    len = 2;
  else if (c0 >= 0xE0 && c0 <= 0xEF) {
    len = 3;
    if (c0 == 0xE0) lo = 0xA0;  // overlong
    if (c0 == 0xED) hi = 0x9F;  // surrogates
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    len = 4;
    if (c0 == 0xF0) lo = 0x90;  // overlong
    if (c0 == 0xF4) hi = 0x8F;  // beyond U+10FFFF
  } else {
    return 1;
  }
  if (pos + len > s.size()) return 1;
  auto c1 = static_cast<unsigned char>(s[pos + 1]);
  if (c1 < lo || c1 > hi) return 1;
  for (size_t i = 2; i < len; ++i) {
    if (!is_continuation(static_cast<unsigned char>(s[pos + i]))) return 1;
  }
  return len;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a "<0xNN>" piece, or -1.
int byte_of_piece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  int hi = hex_digit(piece[3]), lo = hex_digit(piece[4]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

// Unicode NFC of `text`. NFC is defined on characters, so bytes that are not UTF-8 stay as
// they are and the well-formed stretches between them are composed.
std::string composed(std::string_view text) {
  if (std::all_of(text.begin(), text.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
    return std::string(text);
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    size_t start = pos;
    while (pos < text.size()) {
      size_t n = utf8_char_len(text, pos);
      if (n == 1 && static_cast<unsigned char>(text[pos]) >= 0x80) break;
      pos += n;
    }
    if (pos > start) {
      utf8proc_uint8_t* nfc = nullptr;
      utf8proc_ssize_t len =
          utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data() + start),
                       utf8proc_ssize_t(pos - start), &nfc,
                       utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
      if (len >= 0)
        out.append(reinterpret_cast<const char*>(nfc), size_t(len));
      else
        out.append(text.substr(start, pos - start));
      std::free(nfc);
    }
    if (pos < text.size()) out += text[pos++];  // a byte that is not UTF-8
  }
  return out;
}

}  // namespace

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
  const size_t n = vocab_.pieces.size();
  TAPML_REQUIRE(n > 0, "tokenizer: the vocabulary is empty");
  TAPML_REQUIRE(n <= size_t(INT32_MAX), "tokenizer: the vocabulary is too large");
  TAPML_REQUIRE(vocab_.scores.size() == n && vocab_.kinds.size() == n,
                "tokenizer: the vocabulary has " + std::to_string(n) + " pieces but " +
                    std::to_string(vocab_.scores.size()) + " scores and " +
                    std::to_string(vocab_.kinds.size()) + " kinds");
  auto check_id = [&](int id, const char* what) {
    TAPML_REQUIRE(id >= 0 && size_t(id) < n,
                  std::string("tokenizer: the ") + what + " id " + std::to_string(id) +
                      " is outside the vocabulary of " + std::to_string(n) + " pieces");
  };
  check_id(vocab_.bos, "BOS");
  check_id(vocab_.eos, "EOS");
  check_id(vocab_.unk, "unknown-token");
  for (int id : vocab_.eog) check_id(id, "end-of-generation");
  if (vocab_.eog.empty()) vocab_.eog.push_back(vocab_.eos);
  TAPML_REQUIRE(!vocab_.space.empty(), "tokenizer: the vocabulary's space symbol is empty");

  for (size_t i = 0; i < n; ++i) {
    TokenKind k = vocab_.kinds[i];
    if ((k == TokenKind::Control || k == TokenKind::Unknown || k == TokenKind::UserDefined) &&
        !vocab_.pieces[i].empty())
      specials_.push_back(int(i));
  }
  std::stable_sort(specials_.begin(), specials_.end(), [&](int a, int b) {
    return vocab_.pieces[size_t(a)].size() > vocab_.pieces[size_t(b)].size();
  });
  if (vocab_.model != VocabModel::Spm) {
    text_model_ = make_text_model(vocab_);
    return;
  }

  byte_ids_.fill(-1);
  index_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& piece = vocab_.pieces[i];
    const TokenKind kind = vocab_.kinds[i];
    if (kind == TokenKind::Normal || kind == TokenKind::UserDefined) {
      // Later duplicates win, as in llama.cpp's token_to_id.
      index_.insert_or_assign(piece, int(i));
    }
    int b = byte_of_piece(piece);
    // Prefer a piece marked Byte over a look-alike of another kind.
    if (b >= 0 && (byte_ids_[size_t(b)] < 0 || kind == TokenKind::Byte)) {
      byte_ids_[size_t(b)] = int(i);
    }
  }
}

std::vector<int> Tokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int> out;
  if (add_bos) out.push_back(vocab_.bos);
  // The normalizer applies to the text between special tokens, which are matched as written.
  std::string nfc;
  auto normalized = [&](std::string_view t) -> std::string_view {
    if (!vocab_.nfc) return t;
    nfc = composed(t);
    return nfc;
  };
  if (!text_model_ && !parse_special) {
    std::vector<int> ids = encode_spm(normalized(text));
    out.insert(out.end(), ids.begin(), ids.end());
    return out;
  }
  // Cut the text at the special tokens it holds, longest token first; the stretches between
  // them are tokenized as plain text.
  struct Fragment {
    int id;  // -1: text
    size_t off, len;
  };
  std::vector<Fragment> fragments{{-1, 0, text.size()}};
  for (int id : specials_) {
    TokenKind kind = vocab_.kinds[size_t(id)];
    if (!parse_special && kind != TokenKind::UserDefined) continue;
    const std::string& piece = vocab_.pieces[size_t(id)];
    std::vector<Fragment> next;
    for (const Fragment& f : fragments) {
      if (f.id >= 0) {
        next.push_back(f);
        continue;
      }
      size_t pos = f.off, end = f.off + f.len;
      for (size_t m; (m = text.substr(0, end).find(piece, pos)) != std::string_view::npos;) {
        if (m > pos) next.push_back({-1, pos, m - pos});
        next.push_back({id, m, piece.size()});
        pos = m + piece.size();
      }
      if (pos < end) next.push_back({-1, pos, end - pos});
    }
    fragments = std::move(next);
  }
  for (size_t i = 0; i < fragments.size(); ++i) {
    const Fragment& f = fragments[i];
    if (f.id >= 0) {
      out.push_back(f.id);
    } else if (text_model_) {
      text_model_->encode(normalized(text.substr(f.off, f.len)), out);
    } else {
      std::vector<int> ids = encode_spm(normalized(text.substr(f.off, f.len)));
      out.insert(out.end(), ids.begin(), ids.end());
    }
  }
  return out;
}

std::vector<int> Tokenizer::encode_spm(std::string_view text) const {
  std::vector<int> out;
  // No dummy prefix for empty text: "" encodes to nothing (llama2.c, SentencePiece).
  if (text.empty()) return out;

  std::string s;
  s.reserve(text.size() + vocab_.space.size() * 4);
  if (vocab_.add_space_prefix) s += vocab_.space;
  for (char c : text) {
    if (c == ' ')
      s += vocab_.space;
    else
      s += c;
  }
  TAPML_REQUIRE(s.size() <= UINT32_MAX, "tokenizer: text of " + std::to_string(text.size()) +
                                            " bytes is too long to encode");

  std::string joined;
  auto score = [&](Span a, Span b) -> std::optional<double> {
    joined.assign(s, a.start, a.len + b.len);
    auto it = index_.find(joined);
    if (it == index_.end()) return std::nullopt;
    return -double(vocab_.scores[size_t(it->second)]);  // the highest score merges first
  };
  for (Span sym : merge_pairs(s, utf8_char_len, score)) {
    joined.assign(s, sym.start, sym.len);
    auto it = index_.find(joined);
    if (it != index_.end()) {
      out.push_back(it->second);
      continue;
    }
    // Only single characters get here: every merge produced a piece.
    for (char ch : joined) {
      int id = byte_ids_[static_cast<unsigned char>(ch)];
      out.push_back(id >= 0 ? id : vocab_.unk);
    }
  }
  return out;
}

std::string Tokenizer::decode_token(int prev, int token) const {
  TAPML_REQUIRE(token >= 0 && token < vocab_.size(),
                "tokenizer: token id " + std::to_string(token) + " is outside the vocabulary of " +
                    std::to_string(vocab_.size()) + " pieces");
  const std::string& piece = vocab_.pieces[size_t(token)];
  if (text_model_ && vocab_.kinds[size_t(token)] == TokenKind::Normal)
    return text_model_->piece_text(piece);
  switch (vocab_.kinds[size_t(token)]) {
    case TokenKind::Control:
    case TokenKind::Unused:
      return "";
    case TokenKind::Byte: {
      int b = byte_of_piece(piece);
      return b >= 0 ? std::string(1, char(b)) : piece;
    }
    case TokenKind::Unknown:
    case TokenKind::UserDefined:
      return piece;
    case TokenKind::Normal:
      break;
  }
  std::string_view rest = piece;
  const std::string& space = vocab_.space;
  // After BOS the first piece carries the dummy-prefix space, which was never in the text.
  if (prev == vocab_.bos && vocab_.add_space_prefix && rest.starts_with(space)) {
    rest.remove_prefix(space.size());
  }
  if (space == " ") return std::string(rest);
  std::string text;
  text.reserve(rest.size());
  for (size_t pos = 0; pos < rest.size();) {
    if (rest.compare(pos, space.size(), space) == 0) {
      text += ' ';
      pos += space.size();
    } else {
      text += rest[pos++];
    }
  }
  return text;
}

std::string Tokenizer::decode(const std::vector<int>& tokens) const {
  std::string text;
  size_t i = 0;
  int prev = -1;
  // The first token of the text proper (after a leading BOS) begins with the dummy-prefix
  // space; drop it whatever kind of token carries it, so that decode(encode(x)) == x.
  if (!tokens.empty() && tokens[0] == vocab_.bos) {
    text += decode_token(prev, tokens[0]);
    prev = tokens[0];
    i = 1;
  }
  if (i < tokens.size()) {
    std::string first = decode_token(-1, tokens[i]);
    if (vocab_.add_space_prefix && !first.empty() && first[0] == ' ') first.erase(0, 1);
    text += first;
    prev = tokens[i++];
  }
  for (; i < tokens.size(); ++i) {
    text += decode_token(prev, tokens[i]);
    prev = tokens[i];
  }
  return text;
}

}  // namespace tapml

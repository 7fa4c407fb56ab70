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
#include "tokenizer/pieces.h"
#include "tokenizer/utf8.h"

namespace tapml {

namespace {

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the well-formed UTF-8 character at s[pos], or 1 when it is not one, so that a
// stray byte becomes a symbol of its own (and falls back to a byte token) instead of
// swallowing the valid characters after it.
size_t utf8_char_len(std::string_view s, size_t pos) {
  const size_t n = valid_char_len(s, pos);
  return n ? n : 1;
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
  // BOS and EOS may be absent (-1: T5-style unigram models have no BOS) unless the
  // vocabulary asks for them around every text.
  if (vocab_.bos != -1 || vocab_.add_bos) check_id(vocab_.bos, "BOS");
  if (vocab_.eos != -1 || vocab_.add_eos) check_id(vocab_.eos, "EOS");
  check_id(vocab_.unk, "unknown-token");
  for (int id : vocab_.eog) check_id(id, "end-of-generation");
  if (vocab_.eog.empty() && vocab_.eos >= 0) vocab_.eog.push_back(vocab_.eos);
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

std::vector<int> Tokenizer::encode(std::string_view text, bool add_special,
                                   bool parse_special) const {
  std::vector<int> out;
  if (add_special && vocab_.add_bos) out.push_back(vocab_.bos);
  if (add_special && vocab_.add_eos) {
    std::vector<int> body = encode(text, false, parse_special);
    out.insert(out.end(), body.begin(), body.end());
    out.push_back(vocab_.eos);
    return out;
  }
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
  auto score = [&](Span a, Span b) -> std::optional<float> {
    joined.assign(s, a.start, a.len + b.len);
    auto it = index_.find(joined);
    if (it == index_.end()) return std::nullopt;
    return -vocab_.scores[size_t(it->second)];  // the highest score merges first
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
      // SentencePiece writes an unknown piece as " ⁇ " (its unk_surface).
      if (vocab_.model == VocabModel::Unigram) return " \xE2\x81\x87 ";
      return piece;
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
  TextStream stream(*this);
  std::string text;
  for (int t : tokens) text += stream.push(t);
  return text + stream.finish();
}

namespace {

// How many bytes at the end of `s` are the start of a UTF-8 character still missing
// continuation bytes (0 when the text ends on a character boundary or on a byte that can
// never become valid, which is passed on as it is).
size_t incomplete_tail(const std::string& s) {
  size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    auto c = static_cast<unsigned char>(s[n - back]);
    if (is_continuation(c)) continue;
    size_t need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 1;
    return need > back ? back : 0;
  }
  return 0;
}

}  // namespace

std::string TextStream::push(int token) {
  const Vocab& v = tok_.vocab();
  std::string piece;
  if (!text_started_ && prev_ < 0 && token == v.bos) {
    piece = tok_.decode_token(-1, token);
  } else if (!text_started_) {
    // The first token of the text proper begins with the dummy-prefix space; drop it
    // whatever kind of token carries it, so that decode(encode(x)) == x.
    piece = tok_.decode_token(-1, token);
    if (v.add_space_prefix && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    text_started_ = true;
  } else {
    piece = tok_.decode_token(prev_, token);
  }
  prev_ = token;
  held_ += piece;
  size_t keep = incomplete_tail(held_);
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string TextStream::finish() {
  std::string out = std::move(held_);
  held_.clear();
  prev_ = -1;
  text_started_ = false;
  return out;
}

}  // namespace tapml

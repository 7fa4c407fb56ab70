#include "tokenizer/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>

#include "core/error.h"
#include "tokenizer/merge.h"

namespace tapml {

namespace {

// GPT-2's contractions, numbers, letters and other runs, each with an optional leading space.
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";
// Llama 3's split ("(?i:...)" spelled out, as llama.cpp runs it); Qwen2's differs only in
// taking digits one at a time.
constexpr const char* kLlama3 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// DeepSeek LLM's tokenizer.json lists its letters explicitly (as code points: several of
// them have canonical equivalents that an editor may silently normalize).
constexpr const char* kDeepseekLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\)"
    R"(x{293}\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\)"
    R"(x{388}-\x{38A}\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F)"
    R"(}\x{531}-\x{556}\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1)"
    R"(CBA}\x{1CBD}-\x{1CBF}\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00})"
    R"(-\x{1F15}\x{1F18}-\x{1F1D}\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{)"
    R"(1F59}\x{1F5B}\x{1F5D}\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE})"
    R"(\x{1FC2}-\x{1FC4}\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{)"
    R"(1FEC}\x{1FF2}-\x{1FF4}\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115})"
    R"(\x{2119}-\x{211D}\x{2124}\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{21)"
    R"(39}\x{213C}-\x{213F}\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x)"
    R"({2C7E}-\x{2CE4}\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69)"
    R"(B}\x{A722}-\x{A76F}\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\)"
    R"(x{FB06}\x{FB13}-\x{FB17}\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{)"
    R"(104B0}-\x{104D3}\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A)"
    R"(0}-\x{118DF}\x{1E900}-\x{1E943}]+)";
constexpr const char* kCjk = R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";

struct PreTokenizer {
  const char* name;
  std::vector<const char*> patterns;  // applied in turn, each splitting the last one's words
  bool ignore_merges;
  bool byte_level = true;  // false: raw UTF-8 with "▁" spaces (Gemma 4)
};

const std::vector<PreTokenizer>& pre_tokenizers() {
  static const std::vector<PreTokenizer> table = {
      {"gpt-2", {kGpt2}, false},
      {"mpt", {kGpt2}, false},
      {"llama-bpe", {kLlama3}, true},
      {"llama3", {kLlama3}, true},
      {"llama-v3", {kLlama3}, true},
      {"qwen2", {kQwen2}, false},
      {"deepseek-llm",
       {"[\r\n]", kDeepseekLetters,
        R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)",
        R"(\s+$)", kCjk, R"(\p{N}+)"},
       false},
      {"deepseek-coder", {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kCjk, R"(\p{N})"}, false},
      {"falcon", {R"([\p{P}\$\+<=>\^~\|`]+)", kGpt2, "[0-9][0-9][0-9]"}, false},
      {"starcoder", {R"(\p{N})", kGpt2}, false},
      {"refact", {R"(\p{N})", kGpt2}, false},
      // No tokenizer.ggml.pre (older conversions such as GPT-NeoX): llama.cpp's default.
      {"default", {R"([\p{P}\$\+<=>\^~\|]+)", kGpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"}, false},
      // Gemma 4 merges whole lines; only newline runs are cut off.
      {"gemma4", {R"([^\n]+|[\n]+)"}, false, false},
  };
  return table;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

// Length of the UTF-8 sequence a lead byte announces (1 for a stray byte), cut at `left`.
size_t utf8_len(unsigned char c, size_t left) {
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 1;
  return n < left ? n : left;
}

// Decodes the character at s[pos] (advancing pos); a malformed byte decodes as itself.
uint32_t next_cp(std::string_view s, size_t& pos) {
  auto c = static_cast<unsigned char>(s[pos]);
  size_t n = utf8_len(c, s.size() - pos);
  if (n == 1) {
    ++pos;
    return c;
  }
  uint32_t cp = c & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<unsigned char>(s[pos + i]) & 0x3F);
  pos += n;
  return cp;
}

}  // namespace

struct BpeModel::Regex {
  pcre2_code* code = nullptr;
  ~Regex() { pcre2_code_free(code); }
};

const std::vector<std::string>& known_bpe_pre_tokenizers() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const PreTokenizer& p : pre_tokenizers()) v.push_back(p.name);
    return v;
  }();
  return names;
}

bool is_known_bpe_pre_tokenizer(const std::string& pre) {
  for (const PreTokenizer& p : pre_tokenizers())
    if (pre == p.name) return true;
  return false;
}

BpeModel::BpeModel(const Vocab& vocab) : space_(vocab.space) {
  const PreTokenizer* pre = nullptr;
  for (const PreTokenizer& p : pre_tokenizers())
    if (vocab.pre == p.name) pre = &p;
  if (pre == nullptr) {
    std::string names;
    for (const std::string& n : known_bpe_pre_tokenizers())
      names += (names.empty() ? "" : ", ") + n;
    throw Error("tokenizer: unknown pre-tokenizer (tokenizer.ggml.pre) \"" + vocab.pre +
                "\"; known: " + names);
  }
  ignore_merges_ = pre->ignore_merges;
  byte_level_ = pre->byte_level;
  if (byte_level_ != vocab.byte_level)
    throw Error("tokenizer: pre-tokenizer \"" + vocab.pre + "\" is for " +
                (byte_level_ ? "byte-level" : "raw UTF-8") + " BPE vocabularies");
  whole_newlines_ = !byte_level_;
  for (const char* pattern : pre->patterns) {
    int err = 0;
    PCRE2_SIZE at = 0;
    auto r = std::make_unique<Regex>();
    r->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                            PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_MATCH_INVALID_UTF,
                            &err, &at, nullptr);
    if (r->code == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw Error("tokenizer: pre-tokenizer \"" + vocab.pre + "\": regex error at " +
                  std::to_string(at) + ": " + reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE);  // optional: matching works without it
    regexes_.push_back(std::move(r));
  }

  // GPT-2's table: printable Latin-1 bytes stand for themselves, the rest (controls, space,
  // DEL, NBSP, soft hyphen) take code points from 256 up, in byte order.
  uint32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    uint32_t cp = printable ? uint32_t(b) : next++;
    append_utf8(byte_text_[size_t(b)], cp);
    text_byte_[cp] = static_cast<unsigned char>(b);
  }

  ids_.reserve(vocab.pieces.size());
  for (size_t i = 0; i < vocab.pieces.size(); ++i) ids_.insert_or_assign(vocab.pieces[i], int(i));
  byte_ids_.fill(-1);
  if (!byte_level_) {
    static const char* hex = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const char piece[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
      auto it = ids_.find(piece);
      if (it != ids_.end()) byte_ids_[size_t(b)] = it->second;
    }
  }
  // Ranks are merge priorities as floats, exact below 2^24 (llama.cpp's largest lists hold
  // about a million).
  TAPML_REQUIRE(vocab.merges.size() < (size_t(1) << 24),
                "tokenizer: " + std::to_string(vocab.merges.size()) + " merges are too many");
  ranks_.reserve(vocab.merges.size());
  for (size_t i = 0; i < vocab.merges.size(); ++i) {
    const std::string& m = vocab.merges[i];
    // Split at the first space after the first character, as llama.cpp reads merges; the
    // first listing of a pair keeps its rank.
    size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) continue;
    ranks_.emplace(m, int(i));
  }
}

BpeModel::~BpeModel() = default;

std::vector<std::string> BpeModel::split(std::string_view text) const {
  // Words as (offset, length) into text; every regex splits each word into its matches and
  // the stretches between them.
  std::vector<std::pair<size_t, size_t>> words;
  if (!text.empty()) words.push_back({0, text.size()});
  for (const auto& r : regexes_) {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(r->code, nullptr);
    std::vector<std::pair<size_t, size_t>> next;
    next.reserve(words.size() * 2);
    for (auto [off, len] : words) {
      auto subject = reinterpret_cast<PCRE2_SPTR>(text.data() + off);
      size_t pos = 0, last = 0;
      while (pos < len) {
        int rc = pcre2_match(r->code, subject, len, pos, 0, md, nullptr);
        if (rc < 0) break;  // no further match (or an error): the rest is one stretch
        PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        size_t b = ov[0], e = ov[1];
        if (e == b) {  // an empty match contributes nothing; step over one character
          pos = b + utf8_len(static_cast<unsigned char>(text[off + b]), len - b);
          continue;
        }
        if (b > last) next.push_back({off + last, b - last});
        next.push_back({off + b, e - b});
        last = pos = e;
      }
      if (last < len) next.push_back({off + last, len - last});
    }
    pcre2_match_data_free(md);
    words = std::move(next);
  }
  std::vector<std::string> out;
  out.reserve(words.size());
  for (auto [off, len] : words) out.emplace_back(text.substr(off, len));
  return out;
}

void BpeModel::encode(std::string_view text, std::vector<int>& out) const {
  std::string escaped;
  if (!byte_level_) {  // spaces are written as "▁" before the split
    escaped.reserve(text.size());
    for (char c : text) {
      if (c == ' ')
        escaped += space_;
      else
        escaped += c;
    }
    text = escaped;
  }
  std::string encoded;
  for (const std::string& word : split(text)) {
    if (!byte_level_) {
      if (whole_newlines_ && word.find_first_not_of('\n') == std::string::npos) {
        auto it = ids_.find(word);
        if (it != ids_.end()) {
          out.push_back(it->second);
          continue;
        }
      }
      merge_word(word, out);
      continue;
    }
    encoded.clear();
    for (char c : word) encoded += byte_text_[static_cast<unsigned char>(c)];
    if (ignore_merges_) {
      auto it = ids_.find(encoded);
      if (it != ids_.end()) {
        out.push_back(it->second);
        continue;
      }
    }
    merge_word(encoded, out);
  }
}

void BpeModel::merge_word(const std::string& word, std::vector<int>& out) const {
  TAPML_REQUIRE(word.size() <= UINT32_MAX, "tokenizer: a word of " + std::to_string(word.size()) +
                                               " bytes is too long to encode");
  std::string key;
  auto rank = [&](Span a, Span b) -> std::optional<float> {
    key.assign(word, a.start, a.len);
    key += ' ';
    key.append(word, b.start, b.len);
    auto it = ranks_.find(key);
    if (it == ranks_.end()) return std::nullopt;
    return float(it->second);
  };
  auto char_len = [](std::string_view t, size_t pos) {
    return utf8_len(static_cast<unsigned char>(t[pos]), t.size() - pos);
  };
  for (Span sym : merge_pairs(word, char_len, rank)) {
    key.assign(word, sym.start, sym.len);
    auto it = ids_.find(key);
    if (it != ids_.end()) {
      out.push_back(it->second);
      continue;
    }
    // A symbol no piece covers: its characters one by one, dropping any the vocabulary lacks
    // (as llama.cpp does; every byte has a piece in a complete byte-level vocabulary), or
    // its bytes as "<0xNN>" pieces.
    if (!byte_level_) {
      for (char c : key) {
        int id = byte_ids_[static_cast<unsigned char>(c)];
        if (id >= 0) out.push_back(id);
      }
      continue;
    }
    for (size_t pos = 0; pos < key.size();) {
      size_t n = utf8_len(static_cast<unsigned char>(key[pos]), key.size() - pos);
      auto one = ids_.find(key.substr(pos, n));
      if (one != ids_.end()) out.push_back(one->second);
      pos += n;
    }
  }
}

std::string BpeModel::piece_text(std::string_view piece) const {
  std::string out;
  if (!byte_level_) {
    for (size_t pos = 0; pos < piece.size();) {
      if (piece.compare(pos, space_.size(), space_) == 0) {
        out += ' ';
        pos += space_.size();
      } else {
        out += piece[pos++];
      }
    }
    return out;
  }
  out.reserve(piece.size());
  for (size_t pos = 0; pos < piece.size();) {
    size_t start = pos;
    uint32_t cp = next_cp(piece, pos);
    auto it = text_byte_.find(cp);
    if (it != text_byte_.end())
      out += char(it->second);
    else
      out.append(piece.substr(start, pos - start));
  }
  return out;
}

}  // namespace tapml

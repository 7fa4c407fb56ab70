// Vocabulary loaders: llama2.c tokenizer.bin and GGUF tokenizer.ggml.* metadata.
// Both validate before trusting a length or a count, so a damaged file gives an Error that
// names the file and the defect rather than a crash or a huge allocation.
#include "tokenizer/vocab.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string_view>
#include <variant>

#include "core/error.h"
#include "format/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pieces.h"

namespace tapml {

namespace {

// Kinds for a vocabulary that does not store them: the special ids, byte pieces, the rest
// normal. Without this, byte fallback would decode to "<0xNN>" text.
std::vector<TokenKind> inferred_kinds(const Vocab& v) {
  std::vector<TokenKind> kinds(v.pieces.size(), TokenKind::Normal);
  for (size_t i = 0; i < v.pieces.size(); ++i) {
    if (byte_of_piece(v.pieces[i]) >= 0) kinds[i] = TokenKind::Byte;
  }
  auto mark = [&](int id, TokenKind k) {
    if (id >= 0 && id < v.size()) kinds[size_t(id)] = k;
  };
  mark(v.unk, TokenKind::Unknown);
  mark(v.bos, TokenKind::Control);
  mark(v.eos, TokenKind::Control);
  return kinds;
}

// A cursor over the bytes of tokenizer.bin that reports short reads instead of reading past.
struct Reader {
  const std::string& bytes;
  size_t pos = 0;

  size_t left() const { return bytes.size() - pos; }
  bool read(void* out, size_t n) {
    if (left() < n) return false;
    std::memcpy(out, bytes.data() + pos, n);
    pos += n;
    return true;
  }
};

}  // namespace

Vocab load_llama2c_vocab(const std::string& path, int vocab_size) {
  TAPML_REQUIRE(vocab_size > 0, path + ": the model's vocab_size is " + std::to_string(vocab_size) +
                                    ", it must be positive");
  std::ifstream in(path, std::ios::binary);
  TAPML_REQUIRE(bool(in), path + ": cannot open the tokenizer file (" + std::strerror(errno) + ")");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TAPML_REQUIRE(!in.bad(), path + ": read error");

  Reader r{bytes};
  int32_t max_len = 0;
  TAPML_REQUIRE(r.read(&max_len, 4),
                path + ": not a llama2.c tokenizer: " + std::to_string(bytes.size()) +
                    " bytes, too short for the max_token_length header");
  // A piece longer than the header's bound would overflow llama2.c's own merge buffer, so
  // the bound is part of the format; 1 MiB is far beyond any real tokenizer.
  TAPML_REQUIRE(
      max_len > 0 && max_len <= (1 << 20),
      path + ": max_token_length is " + std::to_string(max_len) + ", not a llama2.c tokenizer.bin");

  Vocab v;
  v.space = " ";
  v.add_space_prefix = true;  // llama2.c always adds the dummy prefix
  v.bos = 1;
  v.eos = 2;
  v.unk = 0;
  v.pieces.reserve(size_t(vocab_size));
  v.scores.reserve(size_t(vocab_size));

  // Reads one token; false at a clean end of file, Error on a partial token.
  auto read_token = [&](int index, float& score, std::string& piece) {
    if (r.left() == 0) return false;
    int32_t len = 0;
    TAPML_REQUIRE(r.read(&score, 4) && r.read(&len, 4),
                  path + ": truncated in the header of token " + std::to_string(index));
    TAPML_REQUIRE(!std::isnan(score),
                  path + ": token " + std::to_string(index) + " has a NaN score");
    TAPML_REQUIRE(len >= 0 && len <= max_len,
                  path + ": token " + std::to_string(index) + " has length " + std::to_string(len) +
                      " (max_token_length is " + std::to_string(max_len) + ")");
    TAPML_REQUIRE(r.left() >= size_t(len), path + ": truncated in token " + std::to_string(index) +
                                               " (needs " + std::to_string(len) + " bytes, " +
                                               std::to_string(r.left()) + " left)");
    piece.assign(bytes.data() + r.pos, size_t(len));
    r.pos += size_t(len);
    return true;
  };

  float score = 0;
  std::string piece;
  while (v.size() < vocab_size && read_token(v.size(), score, piece)) {
    v.pieces.push_back(piece);
    v.scores.push_back(score);
  }
  TAPML_REQUIRE(v.size() == vocab_size, path + ": tokenizer has " + std::to_string(v.size()) +
                                            " tokens, the model expects " +
                                            std::to_string(vocab_size));
  // Extra tokens mean the tokenizer belongs to another model; count them for the message.
  int extra = 0;
  while (read_token(vocab_size + extra, score, piece)) ++extra;
  TAPML_REQUIRE(extra == 0, path + ": tokenizer has " + std::to_string(vocab_size + extra) +
                                " tokens, the model expects " + std::to_string(vocab_size));

  v.kinds = inferred_kinds(v);
  v.eog = {v.eos};
  return v;
}

Vocab load_gguf_vocab(const gguf::File& file) {
  const std::string& path = file.path();
  TAPML_REQUIRE(file.has("tokenizer.ggml.model"),
                path + ": no tokenizer.ggml.model: the file has no embedded tokenizer");
  const std::string& model = file.get_string("tokenizer.ggml.model");
  VocabModel kind = VocabModel::Spm;
  if (model == "llama")
    kind = VocabModel::Spm;
  else if (model == "gpt2" || model == "gemma4")
    kind = VocabModel::Bpe;
  else if (model == "bert")
    kind = VocabModel::WordPiece;
  else if (model == "t5")
    kind = VocabModel::Unigram;
  else
    throw Error(path + ": tokenizer model tokenizer.ggml.model = \"" + model +
                "\" is not supported (tapml reads \"llama\", \"gpt2\", \"gemma4\", \"bert\" "
                "and \"t5\" vocabularies)");
  const bool byte_level = model == "gpt2";
  const bool bpe = kind == VocabModel::Bpe;
  // Older conversions carry no pre-tokenizer name. They come from tokenizer.json files whose
  // ByteLevel pre-tokenizer splits with GPT-2's expression, so that is the split used here:
  // it reproduces the Hugging Face tokenizer (GPT-NeoX: every test vector), where llama.cpp's
  // fallback ("default", still selectable by name) differs on digits, spaces before
  // punctuation and emoji.
  std::string pre;
  if (model == "gemma4")
    pre = "gemma4";
  else if (byte_level)
    pre = file.get_string_or("tokenizer.ggml.pre", "");
  if (byte_level && pre.empty()) pre = "gpt-2";
  TAPML_REQUIRE(!bpe || is_known_bpe_pre_tokenizer(pre),
                path + ": unknown pre-tokenizer tokenizer.ggml.pre = \"" + pre + "\"");

  const gguf::Array& tokens = file.get_array("tokenizer.ggml.tokens");
  TAPML_REQUIRE(!tokens.empty(), path + ": tokenizer.ggml.tokens is empty");
  TAPML_REQUIRE(tokens.size() <= size_t(INT32_MAX), path + ": tokenizer.ggml.tokens is too long");
  const size_t n = tokens.size();

  Vocab v;
  v.pieces.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto* s = std::get_if<std::string>(&tokens[i].v);
    TAPML_REQUIRE(s != nullptr,
                  path + ": tokenizer.ggml.tokens[" + std::to_string(i) + "] is not a string");
    v.pieces.push_back(*s);
  }

  v.scores.assign(n, 0.0f);
  if (file.has("tokenizer.ggml.scores")) {
    const gguf::Array& scores = file.get_array("tokenizer.ggml.scores");
    TAPML_REQUIRE(scores.size() == n, path + ": tokenizer.ggml.scores has " +
                                          std::to_string(scores.size()) + " entries for " +
                                          std::to_string(n) + " tokens");
    for (size_t i = 0; i < n; ++i) {
      const auto* d = std::get_if<double>(&scores[i].v);
      TAPML_REQUIRE(d != nullptr && !std::isnan(*d),
                    path + ": tokenizer.ggml.scores[" + std::to_string(i) + "] is not a number");
      v.scores[i] = float(*d);
    }
  }

  auto id_or = [&](const std::string& key, int fallback) {
    uint64_t id = file.get_uint_or(key, uint64_t(fallback));
    TAPML_REQUIRE(id < n, path + ": " + key + " is " + std::to_string(id) +
                              ", the vocabulary has " + std::to_string(n) + " tokens");
    return int(id);
  };
  // An id the vocabulary may lack; converters write "none" as -1 stored unsigned.
  auto optional_id = [&](const std::string& key) {
    if (!file.has(key) || file.get_uint_or(key, 0) == UINT32_MAX) return -1;
    return id_or(key, 0);
  };
  v.model = kind;
  v.unk = id_or("tokenizer.ggml.unknown_token_id", 0);
  if (kind == VocabModel::WordPiece) {
    // BERT frames a text as [CLS] ... [SEP]; llama.cpp calls them BOS and EOS.
    v.cls = id_or("tokenizer.ggml.cls_token_id", 101);
    v.sep = optional_id("tokenizer.ggml.seperator_token_id");
    if (v.sep < 0) v.sep = id_or("tokenizer.ggml.sep_token_id", 102);
    v.bos = id_or("tokenizer.ggml.bos_token_id", v.cls);
    v.eos = id_or("tokenizer.ggml.eos_token_id", v.sep);
    v.lowercase = file.get_bool_or("tokenizer.ggml.normalizer.lowercase", true);
    v.strip_accents = file.get_bool_or("tokenizer.ggml.normalizer.strip_accents", v.lowercase);
  } else {
    v.bos = id_or("tokenizer.ggml.bos_token_id", kind == VocabModel::Unigram ? 0 : 1);
    v.eos = id_or("tokenizer.ggml.eos_token_id", kind == VocabModel::Unigram ? 1 : 2);
  }
  v.pad = optional_id("tokenizer.ggml.padding_token_id");
  v.add_space_prefix = file.get_bool_or("tokenizer.ggml.add_space_prefix", !bpe);
  // Pieces write a space as "▁" (SentencePiece, Gemma 4, and WordPiece word starts as
  // llama.cpp's converter stores them: "▁the" for "the", "ing" for "##ing").
  v.space = byte_level ? " " : "\xE2\x96\x81";
  v.byte_level = byte_level;
  v.pre = pre;
  // llama.cpp: SentencePiece vocabularies, Llama 3's and Gemma 4's put BOS first unless told
  // otherwise (Gemma 4's even when told otherwise); BERT's adds [CLS] and [SEP].
  bool bos_default = kind == VocabModel::Spm || kind == VocabModel::WordPiece ||
                     pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3";
  v.add_bos = file.get_bool_or("tokenizer.ggml.add_bos_token", bos_default) || pre == "gemma4";
  v.add_eos = file.get_bool_or("tokenizer.ggml.add_eos_token",
                               kind == VocabModel::WordPiece || kind == VocabModel::Unigram);
  if (kind == VocabModel::Unigram) {
    if (file.has("tokenizer.ggml.precompiled_charsmap")) {
      const gguf::Array& map = file.get_array("tokenizer.ggml.precompiled_charsmap");
      v.charsmap.reserve(map.size());
      for (size_t i = 0; i < map.size(); ++i) {
        int64_t b = -1;
        if (const auto* s = std::get_if<int64_t>(&map[i].v))
          b = *s;
        else if (const auto* u = std::get_if<uint64_t>(&map[i].v))
          b = int64_t(*u);
        TAPML_REQUIRE(b >= -128 && b <= 255, path + ": tokenizer.ggml.precompiled_charsmap[" +
                                                 std::to_string(i) + "] is not a byte");
        v.charsmap += char(static_cast<unsigned char>(b & 0xFF));
      }
    }
    v.remove_extra_whitespaces = file.get_bool_or("tokenizer.ggml.remove_extra_whitespaces", true);
  }
  if (bpe) {
    TAPML_REQUIRE(file.has("tokenizer.ggml.merges"),
                  path + ": a \"gpt2\" vocabulary needs tokenizer.ggml.merges");
    const gguf::Array& merges = file.get_array("tokenizer.ggml.merges");
    v.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const auto* s = std::get_if<std::string>(&merges[i].v);
      TAPML_REQUIRE(s != nullptr,
                    path + ": tokenizer.ggml.merges[" + std::to_string(i) + "] is not a string");
      v.merges.push_back(*s);
    }
  }

  if (file.has("tokenizer.ggml.token_type")) {
    const gguf::Array& types = file.get_array("tokenizer.ggml.token_type");
    TAPML_REQUIRE(types.size() == n, path + ": tokenizer.ggml.token_type has " +
                                         std::to_string(types.size()) + " entries for " +
                                         std::to_string(n) + " tokens");
    v.kinds.resize(n);
    for (size_t i = 0; i < n; ++i) {
      int64_t t = -1;
      if (const auto* s = std::get_if<int64_t>(&types[i].v))
        t = *s;
      else if (const auto* u = std::get_if<uint64_t>(&types[i].v))
        t = int64_t(*u);
      TAPML_REQUIRE(t >= 0 && t <= 6, path + ": tokenizer.ggml.token_type[" + std::to_string(i) +
                                          "] is " + std::to_string(t) + ", expected 0..6");
      // 0 is llama.cpp's "undefined"; it behaves as a normal piece there too.
      v.kinds[i] = t == 0 ? TokenKind::Normal : TokenKind(int(t));
    }
  } else {
    v.kinds = inferred_kinds(v);
  }

  // End of generation: the declared ids, and the end-of-turn pieces chat vocabularies use
  // when they are control tokens (as llama.cpp recognizes them).
  auto add_eog = [&](int id) {
    if (id >= 0 && std::find(v.eog.begin(), v.eog.end(), id) == v.eog.end()) v.eog.push_back(id);
  };
  if (kind != VocabModel::WordPiece) add_eog(v.eos);
  add_eog(optional_id("tokenizer.ggml.eot_token_id"));
  add_eog(optional_id("tokenizer.ggml.eom_token_id"));
  static const char* const kEndOfTurn[] = {
      "<|eot_id|>", "<|im_end|>", "<|end|>",         "<end_of_turn>", "<|endoftext|>",
      "<|eom_id|>", "<EOT>",      "<|end_of_text|>", "<eos>",         "<turn|>"};
  for (size_t i = 0; i < n; ++i) {
    if (v.kinds[i] != TokenKind::Control && v.kinds[i] != TokenKind::UserDefined) continue;
    for (const char* t : kEndOfTurn)
      if (v.pieces[i] == t) add_eog(int(i));
  }
  return v;
}

}  // namespace tapml

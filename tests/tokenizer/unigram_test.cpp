// SentencePiece .model files and the unigram tokenizer, against what the sentencepiece
// library itself gives for shared/tokenizers/sentencepiece_test_model_unigram1k.model
// (tests/data/sentencepiece_unigram1k_truth.json), and against hostile files.
#include "tokenizer/unigram.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "format/gguf.h"
#include "support/errors.h"
#include "support/shared.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/tokenizer.h"

namespace tapml {
namespace {

using testing::contains;
using testing::error_of;

const char* const kModel = "tokenizers/sentencepiece_test_model_unigram1k.model";
const std::string kSpace = "\xE2\x96\x81";

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const nlohmann::json& truth() {
  static const nlohmann::json j = nlohmann::json::parse(
      file_bytes(std::string(TAPML_SOURCE_DIR) + "/tests/data/sentencepiece_unigram1k_truth.json"));
  return j;
}

Vocab parse(const std::string& bytes, const std::string& name = "test.model") {
  return parse_sentencepiece_model(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                   name);
}

// --- a little protobuf writer, to build models and break them ---

std::string varint(uint64_t v) {
  std::string s;
  for (; v >= 0x80; v >>= 7) s += char(0x80 | (v & 0x7F));
  s += char(v);
  return s;
}
std::string tag(uint32_t field, int wire) { return varint(uint64_t(field) << 3 | uint64_t(wire)); }
std::string bytes_field(uint32_t field, const std::string& bytes) {
  return tag(field, 2) + varint(bytes.size()) + bytes;
}
std::string int_field(uint32_t field, int64_t v) { return tag(field, 0) + varint(uint64_t(v)); }
std::string float_field(uint32_t field, float f) {
  char b[4];
  std::memcpy(b, &f, 4);
  return tag(field, 5) + std::string(b, 4);
}
std::string piece(const std::string& text, float score, int type = 1) {
  std::string m = bytes_field(1, text) + float_field(2, score);
  if (type != 1) m += int_field(3, type);
  return bytes_field(1, m);
}

// <unk> <s> </s>, then `normal` pieces scored -1, -2, ... in order, and `extra` appended.
std::string small_model(const std::vector<std::string>& normal,
                        const std::string& trainer_extra = "", const std::string& normalizer = "",
                        const std::string& extra = "") {
  std::string m = piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3);
  for (size_t i = 0; i < normal.size(); ++i) m += piece(normal[i], -1.0f - float(i));
  m += extra;
  m += bytes_field(2, int_field(3, 1) + trainer_extra);
  m += bytes_field(3, normalizer);
  return m;
}

std::vector<int> encode(const UnigramModel& m, const std::string& text) {
  std::vector<int> ids;
  m.encode(text, ids);
  return ids;
}

// A one-rule charsmap: "a" becomes `replacement`. A darts-clone double array: the root's
// children start at unit 256, "a" is unit 256 ^ 'a' with a leaf whose value unit is 512.
std::string one_rule_charsmap(const std::string& replacement, uint32_t value = 0,
                              uint32_t value_unit = 512) {
  std::vector<uint32_t> units(768, 0);
  units[0] = 256u << 10;
  const uint32_t a = 256 ^ 'a';
  units[a] = ((a ^ value_unit) << 10) | 0x100u | 'a';
  units[value_unit % 768] = value | 0x80000000u;
  std::string blob(4, '\0');
  const uint32_t size = uint32_t(units.size() * 4);
  std::memcpy(blob.data(), &size, 4);
  blob.append(reinterpret_cast<const char*>(units.data()), size);
  blob += replacement;
  blob += '\0';
  return blob;
}

// --- the reader on the real model ---

TEST(SentencePieceModel, ReadsTheUnigramModel) {
  Vocab v = load_sentencepiece_model(testing::shared_path(kModel));
  const nlohmann::json& meta = truth()["meta"];
  EXPECT_EQ(v.model, VocabModel::Unigram);
  EXPECT_EQ(v.size(), meta["size"].get<int>());
  EXPECT_EQ(v.unk, meta["unk"].get<int>());
  EXPECT_EQ(v.bos, meta["bos"].get<int>());
  EXPECT_EQ(v.eos, meta["eos"].get<int>());
  EXPECT_EQ(v.pad, meta["pad"].get<int>());
  EXPECT_EQ(v.pieces[0], "<unk>");
  EXPECT_EQ(v.kinds[0], TokenKind::Unknown);
  EXPECT_EQ(v.kinds[1], TokenKind::Control);
  EXPECT_EQ(v.pieces[4], kSpace);
  EXPECT_EQ(v.kinds[4], TokenKind::Normal);
  EXPECT_FLOAT_EQ(v.scores[4], -3.3334579f);
  EXPECT_TRUE(v.add_space_prefix);
  EXPECT_TRUE(v.remove_extra_whitespaces);
  EXPECT_TRUE(v.escape_whitespaces);
  EXPECT_FALSE(v.treat_whitespace_as_suffix);
  EXPECT_FALSE(v.charsmap.empty());  // nfkc
  EXPECT_FALSE(v.add_bos);
  EXPECT_EQ(v.eog, std::vector<int>{2});
}

TEST(SentencePieceModel, EncodesHelloWorld) {
  Tokenizer tok(load_sentencepiece_model(testing::shared_path(kModel)));
  EXPECT_EQ(tok.encode("hello world", false), (std::vector<int>{39, 88, 21, 887}));
  // A unigram model adds no BOS of its own (sentencepiece's encode does not either).
  EXPECT_EQ(tok.encode("hello world", true), (std::vector<int>{39, 88, 21, 887}));
  EXPECT_EQ(tok.decode({39, 88, 21, 887}), "hello world");
}

// Every case of the sentencepiece library: the ids, the normalized text (which its pieces
// concatenate to) and the pieces themselves where they are not unknown.
TEST(SentencePieceModel, MatchesSentencePiece) {
  Vocab vocab = load_sentencepiece_model(testing::shared_path(kModel));
  UnigramModel model(vocab);
  Tokenizer tok(vocab);
  const nlohmann::json& cases = truth()["cases"];
  ASSERT_GE(cases.size(), 50u);
  size_t passed = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"];
    const auto want = c["ids"].get<std::vector<int>>();
    const auto pieces = c["pieces"].get<std::vector<std::string>>();
    std::string normalized;
    for (const std::string& p : pieces) normalized += p;
    const std::vector<int> got = tok.encode(text, false);
    bool ok = got == want && model.normalize(text) == normalized;
    EXPECT_EQ(got, want) << "text [" << text << "]";
    EXPECT_EQ(model.normalize(text), normalized) << "text [" << text << "]";
    for (size_t i = 0; i < got.size() && i < pieces.size(); ++i) {
      if (got[i] == vocab.unk) continue;  // sentencepiece reports the unknown text there
      EXPECT_EQ(vocab.pieces[size_t(got[i])], pieces[i]) << "text [" << text << "] piece " << i;
      ok = ok && vocab.pieces[size_t(got[i])] == pieces[i];
    }
    passed += ok;
  }
  std::cout << "sentencepiece unigram1k: " << passed << "/" << cases.size() << " cases\n";
  EXPECT_EQ(passed, cases.size());
}

// decode(encode(x)) is sentencepiece's decoding, but for the unknown token: sentencepiece
// writes its unk_surface " ⁇ ", the Tokenizer the text decode_token gives it.
TEST(SentencePieceModel, DecodesAsSentencePiece) {
  Tokenizer tok(load_sentencepiece_model(testing::shared_path(kModel)));
  const std::string unk_text = tok.decode_token(-1, tok.vocab().unk);
  const std::string surface = " \xE2\x81\x87 ";
  size_t passed = 0;
  const nlohmann::json& cases = truth()["cases"];
  for (const auto& c : cases) {
    std::string want = c["decoded"];
    for (size_t pos = 0; (pos = want.find(surface, pos)) != std::string::npos;) {
      want.replace(pos, surface.size(), unk_text);
      pos += unk_text.size();
    }
    const std::string got = tok.decode(tok.encode(c["text"].get<std::string>(), false));
    EXPECT_EQ(got, want) << "text [" << c["text"].get<std::string>() << "]";
    passed += got == want;
  }
  std::cout << "sentencepiece unigram1k decode: " << passed << "/" << cases.size() << " cases\n";
  EXPECT_EQ(passed, cases.size());
}

// The same vocabulary as a GGUF "t5" tokenizer, as llama.cpp's converter writes one.
TEST(SentencePieceModel, UnigramThroughGguf) {
  Vocab v = load_sentencepiece_model(testing::shared_path(kModel));
  gguf::Writer w;
  w.set_string("general.architecture", "t5");
  w.set_string("tokenizer.ggml.model", "t5");
  w.set_string_array("tokenizer.ggml.tokens", v.pieces);
  w.set_f32_array("tokenizer.ggml.scores", v.scores);
  std::vector<int32_t> types;
  for (TokenKind k : v.kinds) types.push_back(int32_t(k));
  w.set_i32_array("tokenizer.ggml.token_type", types);
  w.set_u32("tokenizer.ggml.unknown_token_id", uint32_t(v.unk));
  w.set_u32("tokenizer.ggml.bos_token_id", uint32_t(v.bos));
  w.set_u32("tokenizer.ggml.eos_token_id", uint32_t(v.eos));
  w.set_bool("tokenizer.ggml.add_space_prefix", true);
  w.set_bool("tokenizer.ggml.remove_extra_whitespaces", true);
  gguf::Value map;
  map.type = gguf::ValueType::ARRAY;
  map.elem_type = gguf::ValueType::U8;
  gguf::Array bytes;
  bytes.reserve(v.charsmap.size());
  gguf::Value byte;
  byte.type = gguf::ValueType::U8;
  for (char b : v.charsmap) {
    byte.v = uint64_t(static_cast<unsigned char>(b));
    bytes.push_back(byte);
  }
  map.v = std::move(bytes);
  w.set("tokenizer.ggml.precompiled_charsmap", std::move(map));
  const std::string path = testing::temp_dir() + "/unigram1k.gguf";
  w.write(path);

  Vocab from_gguf = load_gguf_vocab(gguf::File::open(path));
  ASSERT_EQ(from_gguf.model, VocabModel::Unigram);
  EXPECT_EQ(from_gguf.charsmap, v.charsmap);
  Tokenizer tok(from_gguf);
  size_t passed = 0;
  const nlohmann::json& cases = truth()["cases"];
  for (const auto& c : cases) {
    const auto got = tok.encode(c["text"].get<std::string>(), false);
    EXPECT_EQ(got, c["ids"].get<std::vector<int>>()) << "text [" << c["text"] << "]";
    passed += got == c["ids"].get<std::vector<int>>();
  }
  EXPECT_EQ(passed, cases.size());
}

// Unknown fields of every wire type are skipped, in every message.
TEST(SentencePieceModel, SkipsUnknownFields) {
  const std::string unknown = int_field(99, 7) + tag(98, 1) + std::string(8, 'x') +
                              bytes_field(97, "skip me") + tag(96, 5) + "abcd" + tag(95, 3) +
                              int_field(1, 1) + tag(94, 3) + bytes_field(2, "x") + tag(94, 4) +
                              tag(95, 4);
  const std::vector<std::string> normal{kSpace, "a", "b", kSpace + "ab"};
  Vocab plain = parse(small_model(normal));
  std::string m = unknown + piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3);
  for (size_t i = 0; i < normal.size(); ++i) {
    m += bytes_field(1, unknown + bytes_field(1, normal[i]) + unknown +
                            float_field(2, -1.0f - float(i)) + unknown);
  }
  m += bytes_field(2, unknown + int_field(3, 1) + unknown) + bytes_field(3, unknown) + unknown;
  Vocab v = parse(m);
  EXPECT_EQ(v.pieces, plain.pieces);
  EXPECT_EQ(v.scores, plain.scores);
  EXPECT_EQ(v.kinds, plain.kinds);
  EXPECT_EQ(encode(UnigramModel(v), "ab ba"), encode(UnigramModel(plain), "ab ba"));
}

// --- hostile files: one-line Errors naming the file and the defect ---

TEST(SentencePieceModel, RefusesBrokenProtobuf) {
  auto err = [](const std::string& bytes) { return error_of([&] { parse(bytes, "bad.model"); }); };
  EXPECT_TRUE(contains(err(""), "bad.model: the file is empty"));
  EXPECT_TRUE(contains(err("\x80"), "bad.model: the varint of a field tag at byte 0 is cut off"));
  EXPECT_TRUE(contains(err(std::string(11, '\xFF')), "overflows 64 bits"));
  EXPECT_TRUE(contains(err(tag(1, 2) + varint(100) + "ab"), "claims 100 bytes, 2 are left"));
  EXPECT_TRUE(contains(err(tag(1, 2) + varint(uint64_t(1) << 62)), "claims 4611686018427387904"));
  EXPECT_TRUE(contains(err(tag(7, 5) + "ab"), "field 7 is cut off by the end of the data"));
  EXPECT_TRUE(contains(err(tag(7, 6)), "wire type 6, which protobuf does not define"));
  EXPECT_TRUE(contains(err(tag(7, 4)), "end-group) outside any group"));
  EXPECT_TRUE(
      contains(err(tag(7, 3) + int_field(1, 1)), "the group of field 7 at byte 0 has no end"));
  EXPECT_TRUE(contains(err(tag(0, 0) + varint(1)), "field number 0 at byte 0"));
  EXPECT_TRUE(contains(err(int_field(1, 5)),
                       "field 1 (pieces) at byte 0 is varint, expected "
                       "length-delimited"));
  EXPECT_TRUE(contains(err(int_field(5, 3)), "bad.model: no pieces"));
  // A piece whose score is a varint.
  EXPECT_TRUE(
      contains(err(bytes_field(1, bytes_field(1, "a") + int_field(2, 3))),
               "bad.model: piece 0: field 2 (score) at byte 5 is varint, expected fixed32"));
}

TEST(SentencePieceModel, RefusesBadPieces) {
  auto err = [](const std::string& bytes) { return error_of([&] { parse(bytes, "bad.model"); }); };
  EXPECT_TRUE(contains(err(small_model({"a", "\xC3\x28"})),
                       "bad.model: piece 4 (bytes c3 28) is not valid UTF-8"));
  EXPECT_TRUE(
      contains(err(small_model({"a", "\xED\xA0\x80"})), "is not valid UTF-8"));  // surrogate
  EXPECT_TRUE(contains(err(small_model({"a", ""})), "bad.model: piece 4 is empty"));
  EXPECT_TRUE(contains(err(small_model({"a"}, "", "", piece("b", -1, 7))),
                       "bad.model: piece 4 'b' has type 7"));
  EXPECT_TRUE(contains(err(small_model({"a"}, "", "", piece("b", -1, 0))), "has type 0"));
  EXPECT_TRUE(
      contains(err(small_model({"a", "b", "a"})), "bad.model: piece 5 'a' repeats piece 3"));
  EXPECT_TRUE(contains(err(small_model({"a"}, "", "", piece("<unk2>", 0, 2))),
                       "is a second piece of type UNKNOWN"));
  EXPECT_TRUE(contains(err(piece("a", 0) + piece("b", 0) + piece("c", 0)),
                       "bad.model: no piece is of type UNKNOWN"));
  EXPECT_TRUE(contains(err(small_model({"a"}, "", "", piece("<0x41>", 0, 6))),
                       "is a byte piece, but trainer_spec byte_fallback is false"));
  EXPECT_TRUE(contains(err(small_model({"a"}, int_field(35, 1), "", piece("<0x41>", 0, 6))),
                       "byte_fallback is true but the byte piece <0x00> is missing"));
  EXPECT_TRUE(contains(err(small_model({"a"}, int_field(35, 1), "", piece("<0x4g>", 0, 6))),
                       "is of type BYTE but not a byte piece"));
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(contains(err(small_model({"a"}, "", "", piece("b", nan))), "has a NaN score"));
  // Pieces that differ only in kind are allowed, as in sentencepiece: a control "<s>" and a
  // user-defined "<s>" can both be there.
  EXPECT_NO_THROW(parse(small_model({"a"}, "", "", piece("<s>", 0, 4))));
}

TEST(SentencePieceModel, RefusesBadTrainerSpec) {
  auto err = [](const std::string& trainer) {
    return error_of([&] { parse(small_model({"a"}, trainer), "bad.model"); });
  };
  EXPECT_TRUE(contains(err(int_field(41, 5000)),
                       "bad.model: trainer_spec bos_id is 5000, outside the 4 pieces"));
  EXPECT_TRUE(contains(err(int_field(40, -2)), "trainer_spec unk_id is -2"));
  EXPECT_TRUE(contains(err(int_field(43, 4)), "trainer_spec pad_id is 4"));
  EXPECT_TRUE(
      contains(err(int_field(42, int64_t(1) << 40)), "eos_id is 1099511627776, not an int32"));
  EXPECT_TRUE(
      contains(err(int_field(3, 3)),
               "bad.model: model_type WORD is not supported (tapml reads UNIGRAM and BPE)"));
  EXPECT_TRUE(contains(err(int_field(3, 4)), "bad.model: model_type CHAR is not supported"));
  EXPECT_TRUE(contains(err(int_field(3, 9)), "model_type 9 is not a SentencePiece model type"));
  EXPECT_TRUE(contains(err(bytes_field(41, "x")), "field 41 (bos_id) at byte"));
  // -1 is "none": the ids come from the pieces, as SentencePieceProcessor finds them.
  Vocab v = parse(small_model({"a"}, int_field(41, -1) + int_field(43, -1)));
  EXPECT_EQ(v.bos, 1);  // "<s>" is still there, a control piece
  Vocab renamed = parse(small_model({"a"}, bytes_field(46, "<bos>") + bytes_field(47, "a")));
  EXPECT_EQ(renamed.bos, -1);  // no "<bos>" piece
  EXPECT_EQ(renamed.eos, -1);  // "a" is not a control piece
  EXPECT_TRUE(renamed.eog.empty());
  Vocab bpe = parse(small_model({"a"}, int_field(3, 2)));
  EXPECT_EQ(bpe.model, VocabModel::Spm);
  EXPECT_TRUE(bpe.add_bos);
}

TEST(SentencePieceModel, RefusesBrokenCharsMap) {
  auto err = [](const std::string& blob) {
    return error_of([&] { parse(small_model({"a", "A"}, "", bytes_field(2, blob)), "bad.model"); });
  };
  // The well-formed map works: "a" normalizes to "A".
  UnigramModel good(parse(small_model({"a", "A"}, "", bytes_field(2, one_rule_charsmap("A")))));
  EXPECT_EQ(good.normalize("aba"), kSpace + "AbA");
  UnigramModel to_space(parse(small_model({"a"}, "", bytes_field(2, one_rule_charsmap(" ")))));
  EXPECT_EQ(to_space.normalize("xaay"), kSpace + "x" + kSpace + "y");

  EXPECT_TRUE(contains(err(one_rule_charsmap("A", 1000)),
                       "bad.model: normalizer_spec (at byte 75): the precompiled charsmap's trie "
                       "unit 353 points to replacement 1000, outside its 2 bytes"));
  std::string no_nul = one_rule_charsmap("A");
  no_nul.pop_back();
  EXPECT_TRUE(contains(err(no_nul), "points to replacement 0, outside its 1 bytes"));
  EXPECT_TRUE(contains(err(one_rule_charsmap("A", 0, 4000)),
                       "trie unit 353 has its value at unit 4000, past its 768 units"));
  std::string big = one_rule_charsmap("A");
  big[2] = '\x7F';
  EXPECT_TRUE(contains(err(big), "declares a trie of 8326144 bytes in a blob of 3078"));
  std::string odd = one_rule_charsmap("A");
  odd[0] = 1;
  EXPECT_TRUE(contains(err(odd), "declares a trie of 3073 bytes"));
  EXPECT_TRUE(contains(err(std::string(3, '\x04')), "has 3 bytes, too few"));
  // The root's children far outside the trie: no character maps, nothing is wrong.
  std::string far = one_rule_charsmap("A");
  far[4 + 3] = '\x7F';
  EXPECT_EQ(UnigramModel(parse(small_model({"a"}, "", bytes_field(2, far)))).normalize("a"),
            kSpace + "a");
}

// Cut anywhere or with bytes changed anywhere, the real model gives an Error or a vocabulary
// the tokenizer can run on; never a crash.
TEST(SentencePieceModel, SurvivesDamage) {
  const std::string good = file_bytes(testing::shared_path(kModel));
  auto try_one = [](const std::string& bytes) {
    try {
      Vocab v = parse(bytes, "damaged.model");
      UnigramModel m(v);
      std::vector<int> ids;
      m.encode("Hello, y'all! 😁 ½ ＡＢＣ \xFF \t x", ids);
      for (int id : ids) EXPECT_TRUE(id >= 0 && id < v.size());
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), "damaged.model: "));
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    }
  };
  for (size_t cut = 0; cut < good.size(); cut += 4999) try_one(good.substr(0, cut));
  for (size_t cut = 0; cut < 200; ++cut) try_one(good.substr(0, cut));
  std::mt19937 rng(1234);
  for (int i = 0; i < 50; ++i) {
    std::string bad = good;
    for (int k = 0; k < 4; ++k) bad[rng() % bad.size()] = char(rng());
    try_one(bad);
  }
  // Damage inside the charsmap alone, past the protobuf framing.
  Vocab v = parse(good);
  const size_t at = good.find(v.charsmap.substr(0, 64));
  ASSERT_NE(at, std::string::npos);
  for (int i = 0; i < 50; ++i) {
    std::string bad = good;
    bad[at + rng() % v.charsmap.size()] = char(rng());
    try_one(bad);
  }
}

// --- the tokenizer on small hand-made models ---

TEST(Unigram, UnknownRunsAreOneToken) {
  UnigramModel m(parse(small_model({kSpace + "a", kSpace, "a", "b"})));
  // "▁a" "b"; "x" "y" "z" unknown, merged into one; "▁"; "é" unknown.
  EXPECT_EQ(encode(m, "abxyz é"), (std::vector<int>{3, 6, 0, 4, 0}));
  EXPECT_EQ(encode(m, ""), std::vector<int>{});
  EXPECT_EQ(encode(m, "   "), std::vector<int>{});
}

TEST(Unigram, ByteFallback) {
  std::string bytes;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    bytes += piece(name, 0, 6);
  }
  Vocab v = parse(small_model({kSpace + "a", kSpace, "a"}, int_field(35, 1), "", bytes));
  const int byte0 = 6;  // the byte pieces follow the 3 specials and 3 normal pieces
  UnigramModel m(v);
  // "▁a" then U+00E9 and U+1F600 as their UTF-8 bytes, one piece each: no merging.
  EXPECT_EQ(encode(m, "a\xC3\xA9\xF0\x9F\x98\x80"),
            (std::vector<int>{3, byte0 + 0xC3, byte0 + 0xA9, byte0 + 0xF0, byte0 + 0x9F,
                              byte0 + 0x98, byte0 + 0x80}));
  Tokenizer tok(v);
  EXPECT_EQ(tok.decode(tok.encode("a\xC3\xA9 a\xF0\x9F\x98\x80", false)),
            "a\xC3\xA9 a\xF0\x9F\x98\x80");
  // A malformed byte is normalized to U+FFFD first, as sentencepiece does.
  EXPECT_EQ(encode(m, "\xFF"), (std::vector<int>{4, byte0 + 0xEF, byte0 + 0xBF, byte0 + 0xBD}));
}

// User-defined pieces are kept verbatim by the normalizer and win the segmentation: each
// is worth length * FLT_MIN - 0.1, above any (negative) piece score.
TEST(Unigram, UserDefinedPieces) {
  Vocab v = parse(small_model({kSpace, "a", "b", "c", "bc", "x"}, "", "",
                              piece("ab", 0, 4) + piece("<sep>", 0, 4)));
  UnigramModel m(v);
  // "▁" "ab" "c" (-1 - 0.1 - 4) rather than "▁" "a" "bc" (-1 - 2 - 5).
  EXPECT_EQ(encode(m, "abc"), (std::vector<int>{3, 9, 6}));
  EXPECT_EQ(encode(m, "x<sep>x"), (std::vector<int>{3, 8, 10, 8}));
  // With a charsmap that turns "a" into "A", "ab" stays "ab".
  UnigramModel mapped(parse(small_model(
      {kSpace, "A", "b"}, "", bytes_field(2, one_rule_charsmap("A")), piece("ab", 0, 4))));
  EXPECT_EQ(mapped.normalize("abba"), kSpace + "abbA");
}

// The normalizer's switches, as sentencepiece's Normalizer reads them.
TEST(Unigram, WhitespaceOptions) {
  auto normalized = [](const std::string& normalizer, const std::string& trainer,
                       const std::string& text) {
    return UnigramModel(parse(small_model({kSpace, "a", "b"}, trainer, normalizer)))
        .normalize(text);
  };
  const std::string s = kSpace;
  EXPECT_EQ(normalized("", "", "  a  b "), s + "a" + s + "b");
  EXPECT_EQ(normalized(int_field(4, 0), "", "  a  b "), s + s + s + "a" + s + s + "b" + s);
  EXPECT_EQ(normalized(int_field(3, 0), "", "  a  b "), "a" + s + "b");
  EXPECT_EQ(normalized(int_field(5, 0), "", "  a  b "), " a b");
  EXPECT_EQ(normalized("", int_field(24, 1), "  a  b "), "a" + s + "b" + s);
  EXPECT_EQ(normalized(int_field(3, 0) + int_field(4, 0), "", " a"), s + "a");
}

// The segmentation is linear in the text: each position looks ahead at most the longest
// piece.
TEST(Unigram, LongText) {
  Tokenizer tok(load_sentencepiece_model(testing::shared_path(kModel)));
  std::string text;
  while (text.size() < (1u << 20)) text += "hello world, this is 🦙 a test of     spaces\n";
  std::vector<int> ids = tok.encode(text, false);
  EXPECT_GT(ids.size(), text.size() / 8);
  std::string run(1 << 20, 'e');
  EXPECT_FALSE(tok.encode(run, false).empty());
}

}  // namespace
}  // namespace tapml

// WordPiece (BERT) tokenization: llama.cpp's vectors for the bge vocabulary, decoding, unknown
// words, long words, and the greedy rule on hand-built vocabularies in both spellings.
#include "tokenizer/wordpiece.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "format/gguf.h"
#include "support/shared.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vectors.h"
#include "tokenizer/vocab.h"

namespace tapml {
namespace {

using testing::shared_path;

const char* const kBge = "vocab/ggml-vocab-bert-bge.gguf";
constexpr int kUnk = 100;

using Vector = TokenizerVector;

std::vector<Vector> read_vectors(const std::string& vocab_file) {
  return read_tokenizer_vectors(shared_path(vocab_file + ".inp"));
}

Tokenizer bge_tokenizer() {
  return Tokenizer(load_gguf_vocab(gguf::File::open(shared_path(kBge))));
}

TEST(GgufTokenizer, BertBgeVectors) {
  Tokenizer tok = bge_tokenizer();
  ASSERT_EQ(tok.vocab().model, VocabModel::WordPiece);
  std::vector<Vector> vectors = read_vectors(kBge);
  ASSERT_EQ(vectors.size(), 46u);
  size_t passed = 0;
  for (const Vector& v : vectors) {
    std::vector<int> got = tok.encode(v.text, false);
    EXPECT_EQ(got, v.ids) << "input [" << v.text << "]";
    passed += got == v.ids;
  }
  std::cout << kBge << ": " << passed << "/" << vectors.size() << " vectors\n";
  EXPECT_EQ(passed, vectors.size());
}

// BERT frames a text as [CLS] ... [SEP], as llama.cpp does with add_special.
TEST(GgufTokenizer, BertBgeFramesWithClsAndSep) {
  Tokenizer tok = bge_tokenizer();
  EXPECT_EQ(tok.vocab().bos, 101);  // [CLS]
  EXPECT_EQ(tok.vocab().eos, 102);  // [SEP]
  EXPECT_EQ(tok.encode("Hello world", true), (std::vector<int>{101, 7592, 2088, 102}));
}

// Decoding gives the normalized text back exactly when the text is words of letters and
// digits separated by single spaces: leading and repeated whitespace (newlines and tabs too)
// become one space or nothing, punctuation comes back with spaces around it ("hello , world
// !"), case and accents are gone, and unknown words vanish (see BertBgeUnknownWords).
TEST(GgufTokenizer, BertBgeDecodesNormalizedText) {
  Tokenizer tok = bge_tokenizer();
  auto round_trip = [&](const std::string& text) { return tok.decode(tok.encode(text, false)); };
  // Lossless up to case and accents.
  EXPECT_EQ(round_trip("Hello world"), "hello world");
  EXPECT_EQ(round_trip("Hello World"), "hello world");
  EXPECT_EQ(round_trip("w048 7tuijk dsdfhu"), "w048 7tuijk dsdfhu");
  EXPECT_EQ(round_trip("discards"), "discards");
  EXPECT_EQ(round_trip("the quick brown fox jumps over the lazy dog 1314151"),
            "the quick brown fox jumps over the lazy dog 1314151");
  EXPECT_EQ(round_trip("Äpfel"), "apfel");
  EXPECT_EQ(round_trip("Cửa Việt"), "cua viet");
  // Lossy: whitespace and punctuation.
  EXPECT_EQ(round_trip("    Hello\n    Hello"), "hello hello");
  EXPECT_EQ(round_trip(" Hello, world!"), "hello , world !");
  EXPECT_EQ(round_trip("3.3"), "3 . 3");
  // With [CLS] first, which decodes to nothing.
  EXPECT_EQ(tok.decode(tok.encode("Hello world", true)), "hello world");
}

TEST(GgufTokenizer, BertBgeUnknownWords) {
  Tokenizer tok = bge_tokenizer();
  EXPECT_EQ(tok.encode("🦙", false), std::vector<int>{kUnk});
  // A word that matches for a while and then fails is one [UNK], not pieces and [UNK].
  EXPECT_EQ(tok.encode("hello🦙", false), std::vector<int>{kUnk});
  EXPECT_EQ(tok.encode("hello 🦙 world", false), (std::vector<int>{7592, kUnk, 2088}));
  // bge marks [UNK] as a control token, which decodes to nothing.
  EXPECT_EQ(tok.vocab().kinds[kUnk], TokenKind::Control);
  EXPECT_EQ(tok.decode(tok.encode("hello 🦙 world", false)), "hello world");
}

TEST(GgufTokenizer, BertBgeLongWordsAreLinear) {
  Tokenizer tok = bge_tokenizer();
  const std::string word(1 << 20, 'a');
  auto start = std::chrono::steady_clock::now();
  std::vector<int> ids = tok.encode(word, false);
  ASSERT_GT(ids.size(), 1u);
  EXPECT_NE(ids[0], kUnk);
  EXPECT_EQ(tok.decode(ids), word);
  // Fails only at its last character: one [UNK].
  EXPECT_EQ(tok.encode(word + "🦙", false), std::vector<int>{kUnk});
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Linear work takes well under a second for this; a scan quadratic in the word's length
  // would take hours.
  EXPECT_LT(seconds, 10.0);
}

// A vocabulary by hand: the pieces given, in the given spelling, with [UNK] first.
Vocab tiny_vocab(std::vector<std::string> pieces) {
  Vocab v;
  v.model = VocabModel::WordPiece;
  pieces.insert(pieces.begin(), {"[UNK]", "[CLS]", "[SEP]"});
  v.pieces = std::move(pieces);
  v.scores.assign(v.pieces.size(), 0.0f);
  v.kinds.assign(v.pieces.size(), TokenKind::Normal);
  v.kinds[0] = TokenKind::Unknown;
  v.kinds[1] = v.kinds[2] = TokenKind::Control;
  v.unk = 0;
  v.bos = v.cls = 1;
  v.eos = v.sep = 2;
  v.lowercase = v.strip_accents = true;
  return v;
}

std::vector<int> ids_of(const Vocab& v, std::string_view text) {
  std::vector<int> out;
  WordPieceModel(v).encode(text, out);
  return out;
}

// Greedy from the left, longest piece first, and no backtracking: "abc" is "ab" + "##c" when
// "##c" exists; without it the word is [UNK] even though "a" + "##bc" would cover it.
TEST(WordPiece, GreedyLongestMatchMarkerSpelling) {
  //                        3       4      5       6      7      8
  Vocab v = tiny_vocab({"▁a", "▁ab", "bc", "c", "▁abc", "d"});
  EXPECT_EQ(WordPieceModel(v).spelling(), WordPieceModel::Spelling::Marker);
  EXPECT_EQ(ids_of(v, "abc"), std::vector<int>{7});
  EXPECT_EQ(ids_of(v, "abcd"), (std::vector<int>{7, 8}));
  EXPECT_EQ(ids_of(v, "abd"), (std::vector<int>{4, 8}));
  EXPECT_EQ(ids_of(v, "ABD a"), (std::vector<int>{4, 8, 3}));
  EXPECT_EQ(ids_of(v, "abcx"), std::vector<int>{0});
  EXPECT_EQ(ids_of(v, "bc"), std::vector<int>{0});  // a continuation cannot start a word

  Vocab no_c = tiny_vocab({"▁a", "▁ab", "bc"});
  EXPECT_EQ(ids_of(no_c, "abc"), std::vector<int>{0});
  EXPECT_EQ(ids_of(no_c, "ab abc a"), (std::vector<int>{4, 0, 3}));
}

TEST(WordPiece, GreedyLongestMatchHashSpelling) {
  Vocab v = tiny_vocab({"a", "ab", "##bc", "##c", "abc", "##d"});
  WordPieceModel model(v);
  EXPECT_EQ(model.spelling(), WordPieceModel::Spelling::Hashes);
  EXPECT_EQ(ids_of(v, "abc"), std::vector<int>{7});
  EXPECT_EQ(ids_of(v, "abcd"), (std::vector<int>{7, 8}));
  EXPECT_EQ(ids_of(v, "ABD a"), (std::vector<int>{4, 8, 3}));
  EXPECT_EQ(ids_of(v, "bc"), std::vector<int>{0});

  Vocab no_c = tiny_vocab({"a", "ab", "##bc"});
  EXPECT_EQ(ids_of(no_c, "abc"), std::vector<int>{0});
}

TEST(WordPiece, PieceText) {
  WordPieceModel marker(tiny_vocab({"▁the", "ing"}));
  EXPECT_EQ(marker.piece_text("▁the"), " the");
  EXPECT_EQ(marker.piece_text("ing"), "ing");
  WordPieceModel hashes(tiny_vocab({"the", "##ing"}));
  EXPECT_EQ(hashes.piece_text("the"), " the");
  EXPECT_EQ(hashes.piece_text("##ing"), "ing");

  // Through the Tokenizer the first word loses its space.
  Tokenizer tok(tiny_vocab({"▁the", "▁sing", "ing", "er"}));
  std::vector<int> ids = tok.encode("The singing singer", false);
  EXPECT_EQ(ids, (std::vector<int>{3, 4, 5, 4, 6}));
  EXPECT_EQ(tok.decode(ids), "the singing singer");
}

TEST(WordPiece, ForcedSpelling) {
  // Both kinds of prefix; Auto takes the more common one, a flag overrides it.
  Vocab v = tiny_vocab({"▁x", "##y", "##z", "x"});
  EXPECT_EQ(WordPieceModel(v).spelling(), WordPieceModel::Spelling::Hashes);
  std::vector<int> out;
  WordPieceModel(v, WordPieceModel::Spelling::Marker).encode("x", out);
  EXPECT_EQ(out, std::vector<int>{3});
  out.clear();
  WordPieceModel(v, WordPieceModel::Spelling::Hashes).encode("xy", out);
  EXPECT_EQ(out, (std::vector<int>{6, 4}));
}

// BERT's normalizer and split: lowercase, accents stripped, punctuation, ASCII symbols and CJK
// ideographs as words of their own, control characters dropped, Unicode whitespace.
TEST(WordPiece, Split) {
  WordPieceModel model(tiny_vocab({"▁a"}));
  using Words = std::vector<std::string>;
  EXPECT_EQ(model.split(" Hello, y'all!\tÄpfel\n"),
            (Words{"hello", ",", "y", "'", "all", "!", "apfel"}));
  EXPECT_EQ(model.split("a+b=c$ ½ €5"), (Words{"a", "+", "b", "=", "c", "$", "½", "€5"}));
  EXPECT_EQ(model.split("我想在apple工作"), (Words{"我", "想", "在", "apple", "工", "作"}));
  // Zero-width joiner and other format/control characters vanish inside a word; no-break
  // space, ideographic space, \v and \f split.
  EXPECT_EQ(model.split("a\u200Db\x01"
                        "c\u00A0d\u3000e\vf\fg"),
            (Words{"abc", "d", "e", "f", "g"}));
  // Malformed UTF-8 is dropped byte by byte.
  EXPECT_EQ(model.split("ab\xC3"
                        "cd\xFF"),
            (Words{"abcd"}));
  EXPECT_EQ(model.split("ÉCOLE Ωmega"), (Words{"ecole", "ωmega"}));

  Vocab cased = tiny_vocab({"▁a"});
  cased.lowercase = cased.strip_accents = false;
  EXPECT_EQ(WordPieceModel(cased).split("Äpfel Été"), (Words{"Äpfel", "Été"}));
}

TEST(WordPiece, RefusesVocabularyWithoutWordStarts) {
  // Neither "▁" word starts nor "##" continuations: no way to tell which pieces start words.
  EXPECT_THROW(WordPieceModel(tiny_vocab({"a", "b"})), Error);
  // Marker spelling forced on a vocabulary that has no marked pieces.
  EXPECT_THROW(WordPieceModel(tiny_vocab({"a", "##b"}), WordPieceModel::Spelling::Marker), Error);
  try {
    WordPieceModel model(tiny_vocab({"a", "b"}));
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tapml

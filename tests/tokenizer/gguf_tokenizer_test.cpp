// The tokenizer on GGUF vocabularies, against llama.cpp's tokenizer test vectors
// (ggml-vocab-*.gguf.inp/.out, as its test-tokenizer-0 reads them).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "format/gguf.h"
#include "support/shared.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/vectors.h"
#include "tokenizer/vocab.h"

namespace tapml {
namespace {

using testing::shared_path;

std::string file_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

using Vector = TokenizerVector;

// The vectors of a shared vocabulary file (tokenizer/vectors.h).
std::vector<Vector> read_vectors(const std::string& vocab_file) {
  return read_tokenizer_vectors(shared_path(vocab_file + ".inp"));
}

Tokenizer gguf_tokenizer(const std::string& vocab_file) {
  return Tokenizer(load_gguf_vocab(gguf::File::open(shared_path(vocab_file))));
}

// Encodes every vector without BOS; returns how many match.
int check_vectors(const std::string& vocab_file) {
  Tokenizer tok = gguf_tokenizer(vocab_file);
  std::vector<Vector> vectors = read_vectors(vocab_file);
  EXPECT_GT(vectors.size(), 40u);
  int passed = 0;
  for (const Vector& v : vectors) {
    std::vector<int> got = tok.encode(v.text, false);
    EXPECT_EQ(got, v.ids) << vocab_file << ": input [" << v.text << "]";
    passed += got == v.ids;
  }
  std::cout << vocab_file << ": " << passed << "/" << vectors.size() << " vectors\n";
  return passed;
}

// decode(encode(x)) gives x back with and without BOS: the dummy-prefix space that encode
// adds is the one decode drops, so leading spaces of x survive. The one loss is U+2581
// itself, which the vocabulary cannot tell from an escaped space.
void check_round_trips(const std::string& vocab_file) {
  Tokenizer tok = gguf_tokenizer(vocab_file);
  const std::string lower_block = "\xE2\x96\x81";
  for (const Vector& v : read_vectors(vocab_file)) {
    std::string expected = v.text;
    for (size_t p; (p = expected.find(lower_block)) != std::string::npos;) {
      expected.replace(p, lower_block.size(), " ");
    }
    EXPECT_EQ(tok.decode(tok.encode(v.text, false)), expected) << "[" << v.text << "]";
    EXPECT_EQ(tok.decode(tok.encode(v.text, true)), expected) << "[" << v.text << "]";
  }
}

TEST(GgufVocab, LoadsLlamaSpm) {
  Tokenizer tok = gguf_tokenizer("vocab/ggml-vocab-llama-spm.gguf");
  const Vocab& v = tok.vocab();
  ASSERT_EQ(v.size(), 32000);
  EXPECT_EQ(v.bos, 1);
  EXPECT_EQ(v.eos, 2);
  EXPECT_EQ(v.unk, 0);
  EXPECT_TRUE(v.add_space_prefix);
  EXPECT_EQ(v.space, "\xE2\x96\x81");
  EXPECT_EQ(v.kinds[0], TokenKind::Unknown);
  EXPECT_EQ(v.kinds[1], TokenKind::Control);
  EXPECT_EQ(v.pieces[3], "<0x00>");
  EXPECT_EQ(v.kinds[3], TokenKind::Byte);
  EXPECT_EQ(v.kinds[1000], TokenKind::Normal);
}

TEST(GgufTokenizer, LlamaSpmVectors) {
  EXPECT_EQ(check_vectors("vocab/ggml-vocab-llama-spm.gguf"), 46);
}

// Phi-3 keeps Llama 2's 32000 pieces and adds 11 control tokens (<|assistant|>, ...) and 53
// [PADn] pieces of kind Unknown, none of which plain text produces, so llama.cpp's vectors
// for it are the same as for llama-spm.
TEST(GgufTokenizer, Phi3Vectors) { EXPECT_EQ(check_vectors("vocab/ggml-vocab-phi-3.gguf"), 46); }

TEST(GgufTokenizer, LlamaSpmRoundTrips) { check_round_trips("vocab/ggml-vocab-llama-spm.gguf"); }
TEST(GgufTokenizer, Phi3RoundTrips) { check_round_trips("vocab/ggml-vocab-phi-3.gguf"); }

// Byte-level BPE vocabularies, one per pre-tokenizer split llama.cpp tests. Every byte has a
// piece, so decoding gives back exactly the text encoded.
void check_byte_level(const std::string& name) {
  const std::string file = "vocab/ggml-vocab-" + name + ".gguf";
  EXPECT_EQ(check_vectors(file), 46);
  Tokenizer tok = gguf_tokenizer(file);
  EXPECT_TRUE(tok.vocab().byte_level);
  for (const Vector& v : read_vectors(file))
    EXPECT_EQ(tok.decode(tok.encode(v.text, false)), v.text) << name << ": [" << v.text << "]";
}

TEST(GgufTokenizer, Gpt2Vectors) { check_byte_level("gpt-2"); }
TEST(GgufTokenizer, Llama3Vectors) { check_byte_level("llama-bpe"); }
TEST(GgufTokenizer, Qwen2Vectors) { check_byte_level("qwen2"); }
TEST(GgufTokenizer, DeepseekLlmVectors) { check_byte_level("deepseek-llm"); }
TEST(GgufTokenizer, DeepseekCoderVectors) { check_byte_level("deepseek-coder"); }
TEST(GgufTokenizer, FalconVectors) { check_byte_level("falcon"); }
TEST(GgufTokenizer, StarcoderVectors) { check_byte_level("starcoder"); }
TEST(GgufTokenizer, RefactVectors) { check_byte_level("refact"); }
TEST(GgufTokenizer, MptVectors) { check_byte_level("mpt"); }

// Gemma 4: ranked merges over raw UTF-8 with "▁" spaces and "<0xNN>" byte fallback; every
// byte has a fallback piece, so it round-trips too.
TEST(GgufTokenizer, Gemma4Vectors) {
  const std::string file = "vocab/ggml-vocab-gemma-4.gguf";
  EXPECT_EQ(check_vectors(file), 46);
  Tokenizer tok = gguf_tokenizer(file);
  EXPECT_EQ(tok.vocab().model, VocabModel::Bpe);
  EXPECT_FALSE(tok.vocab().byte_level);
  EXPECT_TRUE(tok.vocab().add_bos);
  for (const Vector& v : read_vectors(file))
    EXPECT_EQ(tok.decode(tok.encode(v.text, false)), v.text) << "gemma-4: [" << v.text << "]";
  // <end_of_turn>-style chat tokens end generation along with EOS.
  const std::vector<int>& eog = tok.vocab().eog;
  EXPECT_NE(std::find(eog.begin(), eog.end(), tok.vocab().eos), eog.end());
  EXPECT_GT(eog.size(), 1u);
}

TEST(GgufTokenizer, ByteLevelBasics) {
  Tokenizer tok = gguf_tokenizer("vocab/ggml-vocab-gpt-2.gguf");
  const Vocab& v = tok.vocab();
  EXPECT_EQ(v.pre, "gpt-2");
  EXPECT_FALSE(v.add_space_prefix);
  // "Hello world": "Hello", "Ġworld" (GPT-2 writes the space as U+0120).
  std::vector<int> ids = tok.encode("Hello world", false);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(v.pieces[size_t(ids[1])], "\xC4\xA0world");
  EXPECT_EQ(tok.decode_token(ids[0], ids[1]), " world");
  // Bytes that are not UTF-8 still round-trip through their byte pieces.
  const std::string raw = "a\xFF\xFE b\x80";
  EXPECT_EQ(tok.decode(tok.encode(raw, false)), raw);
}

// Ids the Hugging Face tokenizers library gives for the GGUF vocabularies' own tokenizer.json
// files (tests/data/hf_tokenizers_truth.json: every input of the .inp files and a few more).
int check_hf_truth(const std::string& vocab_file, const std::string& truth_key) {
  Tokenizer tok = gguf_tokenizer(vocab_file);
  nlohmann::json truth = nlohmann::json::parse(
      file_text(std::string(TAPML_SOURCE_DIR) + "/tests/data/hf_tokenizers_truth.json"));
  const nlohmann::json& cases = truth.at(truth_key);
  int passed = 0;
  for (const auto& c : cases) {
    std::string text = c.at("text");
    std::vector<int> got = tok.encode(text, false), want = c.at("ids");
    EXPECT_EQ(got, want) << vocab_file << ": input [" << text << "]";
    passed += got == want;
  }
  std::cout << vocab_file << ": " << passed << "/" << cases.size() << " Hugging Face cases\n";
  EXPECT_GT(cases.size(), 50u);
  return passed == int(cases.size()) ? passed : -1;
}

// The vocabulary without tokenizer.ggml.pre (GPT-NeoX) splits as its tokenizer.json's
// ByteLevel pre-tokenizer does (GPT-2's expression), which gives the Hugging Face ids;
// llama.cpp's fallback split would differ on 14 of these cases.
TEST(GgufTokenizer, MissingPreTokenizerSplitsLikeHuggingFace) {
  Tokenizer tok = gguf_tokenizer("vocab/ggml-vocab-gpt-neox.gguf");
  EXPECT_EQ(tok.vocab().pre, "gpt-2");
  EXPECT_GT(check_hf_truth("vocab/ggml-vocab-gpt-neox.gguf", "gpt-neox-20b_tokenizer.json"), 0);
  const std::string text = "Hello, world! 12345 \xE4\xBD\xA0\xE5\xA5\xBD  tabs\t\tend ";
  EXPECT_EQ(tok.decode(tok.encode(text, false)), text);
}

TEST(GgufTokenizer, LlamaSpmMatchesHuggingFace) {
  EXPECT_GT(check_hf_truth("vocab/ggml-vocab-llama-spm.gguf", "llama2_tokenizer.json"), 0);
}

// Control tokens' text is plain text unless parse_special asks for them.
TEST(GgufTokenizer, ParseSpecialMatchesControlTokens) {
  Tokenizer tok = gguf_tokenizer("vocab/ggml-vocab-llama-bpe.gguf");
  const Vocab& v = tok.vocab();
  int eot = -1;
  for (int i = 0; i < v.size(); ++i)
    if (v.pieces[size_t(i)] == "<|eot_id|>") eot = i;
  ASSERT_GE(eot, 0);
  EXPECT_EQ(v.kinds[size_t(eot)], TokenKind::Control);
  std::vector<int> plain = tok.encode("hi<|eot_id|>there", false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), eot), 0);
  std::vector<int> special = tok.encode("hi<|eot_id|>there", false, true);
  ASSERT_EQ(std::count(special.begin(), special.end(), eot), 1);
  std::vector<int> hi = tok.encode("hi", false), there = tok.encode("there", false);
  std::vector<int> expected = hi;
  expected.push_back(eot);
  expected.insert(expected.end(), there.begin(), there.end());
  EXPECT_EQ(special, expected);
  EXPECT_TRUE(v.add_bos);                     // Llama 3 puts BOS first
  EXPECT_EQ(tok.decode(special), "hithere");  // control tokens decode to nothing
}

TEST(GgufTokenizer, DecodeDropsOnlyTheDummyPrefix) {
  Tokenizer tok = gguf_tokenizer("vocab/ggml-vocab-llama-spm.gguf");
  std::vector<int> hello = tok.encode(" Hello world", false);
  // "▁▁Hello": the dummy prefix plus the text's own space.
  EXPECT_EQ(hello, (std::vector<int>{29871, 15043, 3186}));
  EXPECT_EQ(tok.decode(hello), " Hello world");
  EXPECT_EQ(tok.decode_token(1, 15043), "Hello");  // "▁Hello" after BOS
  EXPECT_EQ(tok.decode_token(15043, 3186), " world");
  EXPECT_EQ(tok.encode("", true), std::vector<int>{1});
  EXPECT_TRUE(tok.encode("", false).empty());
}

// The tiny random Llama carries the real Llama 2 tokenizer: the same pieces as llama-spm.
TEST(GgufTokenizer, EmbeddedLlama2Tokenizer) {
  Tokenizer tiny = Tokenizer(load_gguf_vocab(
      gguf::File::open(shared_path("models/tiny-random/llama-2-tiny-random.gguf"))));
  Tokenizer spm = gguf_tokenizer("vocab/ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(tiny.vocab().pieces, spm.vocab().pieces);
  const std::string text = "Hello world! Ünïcödé 🙂 and\nnew lines";
  EXPECT_EQ(tiny.encode(text, true), spm.encode(text, true));
}

// A GGUF vocabulary written here, to pin the defaults for keys a file may leave out.
std::string small_vocab_gguf(const std::string& name,
                             const std::function<void(gguf::Writer&)>& adjust) {
  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens",
                     {"<unk>", "<s>", "</s>", "<0x0A>", "\xE2\x96\x81", "a", "b", "ab",
                      "\xE2\x96\x81"
                      "a"});
  adjust(w);
  std::string path = testing::temp_dir() + "/" + name;
  w.write(path);
  return path;
}

TEST(GgufVocab, DefaultsForOptionalKeys) {
  std::string path = small_vocab_gguf(
      "small.gguf", [](gguf::Writer& w) { w.set_bool("tokenizer.ggml.add_space_prefix", false); });
  Tokenizer tok(load_gguf_vocab(gguf::File::open(path)));
  const Vocab& v = tok.vocab();
  EXPECT_FALSE(v.add_space_prefix);
  EXPECT_EQ(v.scores, std::vector<float>(9, 0.0f));
  // Without token_type the kinds follow from the special ids and the byte pieces.
  EXPECT_EQ(v.kinds,
            (std::vector<TokenKind>{TokenKind::Unknown, TokenKind::Control, TokenKind::Control,
                                    TokenKind::Byte, TokenKind::Normal, TokenKind::Normal,
                                    TokenKind::Normal, TokenKind::Normal, TokenKind::Normal}));
  // No dummy prefix; equal scores merge leftmost first ("ab" before "▁a").
  std::vector<int> ids = tok.encode("ab a\n", false);
  EXPECT_EQ(ids, (std::vector<int>{7, 8, 3}));
  EXPECT_EQ(tok.decode(ids), "ab a\n");
  EXPECT_EQ(tok.decode_token(1, 8), " a");                     // no dummy prefix to drop
  EXPECT_EQ(tok.encode("c", true), (std::vector<int>{1, 0}));  // no piece, no byte: unk
}

TEST(GgufVocabErrors, InconsistentMetadata) {
  auto message = [](const std::string& path) {
    try {
      load_gguf_vocab(gguf::File::open(path));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no Error");
  };
  std::string path = small_vocab_gguf("scores.gguf", [](gguf::Writer& w) {
    w.set_f32_array("tokenizer.ggml.scores", {0.0f, 1.0f});
  });
  EXPECT_NE(message(path).find("tokenizer.ggml.scores has 2 entries for 9 tokens"),
            std::string::npos)
      << message(path);
  path = small_vocab_gguf("types.gguf", [](gguf::Writer& w) {
    w.set_i32_array("tokenizer.ggml.token_type", {2, 3, 3, 6, 1, 1, 1, 1, 9});
  });
  EXPECT_NE(message(path).find("tokenizer.ggml.token_type[8] is 9"), std::string::npos)
      << message(path);
  path = small_vocab_gguf("bos.gguf",
                          [](gguf::Writer& w) { w.set_u32("tokenizer.ggml.bos_token_id", 9); });
  EXPECT_NE(message(path).find("tokenizer.ggml.bos_token_id is 9"), std::string::npos)
      << message(path);
  // A model file without a tokenizer at all.
  gguf::Writer bare;
  bare.set_string("general.architecture", "llama");
  path = testing::temp_dir() + "/bare.gguf";
  bare.write(path);
  EXPECT_NE(message(path).find("no tokenizer.ggml.model"), std::string::npos) << message(path);
}

// A copy of a vocabulary file with one string key changed, for the refusals below.
std::string with_string_key(const std::string& vocab_file, const std::string& name,
                            const std::string& key, const std::string& value) {
  gguf::File src = gguf::File::open(shared_path(vocab_file));
  gguf::Writer w;
  w.set_string("general.architecture", "gpt2");
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "gpt-2");
  std::vector<std::string> tokens;
  for (const auto& t : src.get_array("tokenizer.ggml.tokens"))
    tokens.push_back(std::get<std::string>(t.v));
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  std::vector<std::string> merges;
  for (const auto& m : src.get_array("tokenizer.ggml.merges"))
    merges.push_back(std::get<std::string>(m.v));
  w.set_string_array("tokenizer.ggml.merges", merges);
  w.set_string(key, value);
  std::string path = testing::temp_dir() + "/" + name;
  w.write(path);
  return path;
}

std::string load_error(const std::string& path) {
  try {
    load_gguf_vocab(gguf::File::open(path));
  } catch (const Error& e) {
    return e.what();
  }
  return "no Error";
}

TEST(GgufVocabErrors, RefusesUnknownPreTokenizer) {
  std::string path = with_string_key("vocab/ggml-vocab-gpt-2.gguf", "pre.gguf",
                                     "tokenizer.ggml.pre", "no-such-split");
  std::string msg = load_error(path);
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"no-such-split\""), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(GgufVocabErrors, RefusesUnknownTokenizerModel) {
  std::string path =
      with_string_key("vocab/ggml-vocab-gpt-2.gguf", "model.gguf", "tokenizer.ggml.model", "rwkv");
  std::string msg = load_error(path);
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("\"rwkv\""), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(GgufVocabErrors, MissingFile) {
  EXPECT_THROW(gguf::File::open("/nonexistent/vocab.gguf"), Error);
}

// Streaming a token sequence gives decode()'s text, and every piece printed along the way is
// whole characters even where byte tokens split one (emoji, CJK through byte fallback).
void check_stream(const std::string& vocab_file) {
  Tokenizer tok = gguf_tokenizer(vocab_file);
  int split_chars = 0;
  for (const Vector& v : read_vectors(vocab_file)) {
    if (!valid_utf8(v.text)) continue;
    std::vector<int> ids = tok.encode(v.text, true);
    TextStream stream(tok);
    std::string joined;
    for (int id : ids) {
      std::string part = stream.push(id);
      EXPECT_TRUE(valid_utf8(part))
          << vocab_file << ": [" << v.text << "] printed a split character";
      joined += part;
      split_chars += !valid_utf8(tok.decode_token(-1, id));
    }
    joined += stream.finish();
    EXPECT_EQ(joined, tok.decode(ids)) << vocab_file << ": [" << v.text << "]";
  }
  // The vectors hold emoji, so some single tokens are parts of a character.
  EXPECT_GT(split_chars, 0) << vocab_file;
}

TEST(TextStream, HoldsPartialCharactersSentencePiece) {
  check_stream("vocab/ggml-vocab-llama-spm.gguf");
}
TEST(TextStream, HoldsPartialCharactersByteLevel) { check_stream("vocab/ggml-vocab-gpt-2.gguf"); }

TEST(TextStream, FinishGivesBackAnIncompleteTail) {
  Tokenizer tok = gguf_tokenizer("vocab/ggml-vocab-llama-spm.gguf");
  // "é" is C3 A9; byte fallback pieces <0xC3> and <0xA9> exist in Llama 2's vocabulary.
  const Vocab& v = tok.vocab();
  int c3 = -1, a9 = -1;
  for (int i = 0; i < v.size(); ++i) {
    if (v.pieces[size_t(i)] == "<0xC3>") c3 = i;
    if (v.pieces[size_t(i)] == "<0xA9>") a9 = i;
  }
  ASSERT_GE(c3, 0);
  ASSERT_GE(a9, 0);
  TextStream stream(tok);
  EXPECT_EQ(stream.push(c3), "");
  EXPECT_EQ(stream.push(a9), "\xC3\xA9");
  EXPECT_EQ(stream.push(c3), "");
  EXPECT_EQ(stream.finish(), "\xC3");  // the sequence ended inside a character
}

}  // namespace
}  // namespace tapml

// The tokenizer on llama2.c's tok512.bin (stories260K): encodings must equal the prompt ids
// that llama2.c's own encoder produced in the golden runs, decodings their printed text.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "support/errors.h"
#include "support/shared.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace tapml {
namespace {

using testing::error_of;

using testing::shared_path;

const char* kTok512 = "models/stories260K/tok512.bin";

const Tokenizer& tok512() {
  static const Tokenizer tok(load_llama2c_vocab(shared_path(kTok512), 512));
  return tok;
}

nlohmann::json golden(int n) {
  std::ifstream in(shared_path("golden/stories260K/greedy_" + std::to_string(n) + ".json"));
  return nlohmann::json::parse(in);
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string write_file(const std::string& name, const std::string& bytes) {
  std::string path = testing::temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  return path;
}

// A tokenizer.bin with the given pieces (score = -index), in llama2.c's layout.
std::string tokenizer_bin(const std::vector<std::string>& pieces, int32_t max_len) {
  std::string b;
  auto put = [&](const void* p, size_t n) { b.append(static_cast<const char*>(p), n); };
  put(&max_len, 4);
  for (size_t i = 0; i < pieces.size(); ++i) {
    float score = -float(i);
    int32_t len = int32_t(pieces[i].size());
    put(&score, 4);
    put(&len, 4);
    put(pieces[i].data(), pieces[i].size());
  }
  return b;
}

TEST(Llama2cVocab, LoadsTok512) {
  const Vocab& v = tok512().vocab();
  ASSERT_EQ(v.size(), 512);
  EXPECT_EQ(v.space, " ");
  EXPECT_TRUE(v.add_space_prefix);
  EXPECT_EQ(v.bos, 1);
  EXPECT_EQ(v.eos, 2);
  EXPECT_EQ(v.unk, 0);
  EXPECT_EQ(v.kinds[0], TokenKind::Unknown);
  EXPECT_EQ(v.kinds[1], TokenKind::Control);
  EXPECT_EQ(v.kinds[2], TokenKind::Control);
  EXPECT_EQ(v.pieces[3], "<0x00>");
  EXPECT_EQ(v.pieces[258], "<0xFF>");
  for (int i = 3; i <= 258; ++i) EXPECT_EQ(v.kinds[size_t(i)], TokenKind::Byte) << i;
  for (int i = 259; i < 512; ++i) EXPECT_EQ(v.kinds[size_t(i)], TokenKind::Normal) << i;
}

TEST(Llama2cTokenizer, EncodesGoldenPrompts) {
  for (int n : {1, 2}) {
    nlohmann::json g = golden(n);
    std::vector<int> ids = g["token_ids"].get<std::vector<int>>();
    std::vector<int> got = tok512().encode(g["prompt"].get<std::string>(), true);
    ASSERT_LE(got.size(), ids.size());
    EXPECT_EQ(got, std::vector<int>(ids.begin(), ids.begin() + std::ptrdiff_t(got.size())))
        << "greedy_" << n;
    if (n == 1) {
      EXPECT_EQ(got.size(), 5u);  // BOS + " Once", " upon", " a", " time"
    }
  }
}

TEST(Llama2cTokenizer, EmptyTextIsJustBos) {
  EXPECT_EQ(tok512().encode("", true), std::vector<int>{1});
  EXPECT_TRUE(tok512().encode("", false).empty());
}

TEST(Llama2cTokenizer, DecodesGoldenTextsExactly) {
  for (int n : {0, 1, 2}) {
    nlohmann::json g = golden(n);
    std::vector<int> ids = g["token_ids"].get<std::vector<int>>();
    EXPECT_EQ(tok512().decode(ids), g["text"].get<std::string>()) << "greedy_" << n;
  }
}

TEST(Llama2cTokenizer, DecodeTokenFollowsLlama2c) {
  const Tokenizer& t = tok512();
  std::vector<int> ids = t.encode("Once upon", true);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(t.decode_token(1, ids[1]), "Once");  // the dummy prefix goes after BOS
  EXPECT_EQ(t.decode_token(ids[1], ids[2]), " upon");
  EXPECT_EQ(t.decode_token(ids[2], 1), "");  // control tokens print nothing
  EXPECT_EQ(t.decode_token(ids[2], 2), "");
  EXPECT_EQ(t.decode_token(ids[2], 3 + 0x0A), "\n");  // byte tokens print their byte
  EXPECT_THROW(t.decode_token(1, 512), Error);
  EXPECT_THROW(t.decode_token(1, -1), Error);
}

TEST(Llama2cTokenizer, NonAsciiRoundTripsThroughByteFallback) {
  const Tokenizer& t = tok512();
  const std::string s = "Héllo wörld — 日本語 🙂!";
  std::vector<int> ids = t.encode(s, true);
  int bytes = 0;
  for (int id : ids) bytes += (id >= 3 && id <= 258);
  // "é" (485) and "—" (481) are pieces of tok512; ö, 日本語 and 🙂 fall back to their
  // 2 + 9 + 4 bytes.
  EXPECT_EQ(bytes, 15);
  EXPECT_NE(std::find(ids.begin(), ids.end(), 485), ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), 481), ids.end());
  EXPECT_EQ(t.decode(ids), s);
  EXPECT_EQ(t.decode(t.encode(s, false)), s);
}

TEST(Llama2cTokenizer, InvalidUtf8BecomesSingleBytes) {
  const Tokenizer& t = tok512();
  // A lead byte without its continuation must not swallow the "ab" after it.
  const std::string s = std::string("x\xE4") + "ab \xFF\xC3";
  std::vector<int> ids = t.encode(s, false);
  EXPECT_EQ(t.decode(ids), s);
  EXPECT_NE(std::find(ids.begin(), ids.end(), 3 + 0xE4), ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), 3 + 0xFF), ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), 3 + 0xC3), ids.end());
}

TEST(Llama2cTokenizer, RoundTripsSpacesAndNewlines) {
  const Tokenizer& t = tok512();
  for (std::string s : {" ", "  a", "a  ", " Lily\n\nTom ", "\n", "\t x"}) {
    EXPECT_EQ(t.decode(t.encode(s, true)), s) << "[" << s << "]";
    EXPECT_EQ(t.decode(t.encode(s, false)), s) << "[" << s << "]";
  }
}

TEST(Llama2cTokenizer, SpecialPiecesInTextStayText) {
  const Tokenizer& t = tok512();
  for (std::string s : {"<s>", "</s>", "<unk>", "<0x0A>"}) {
    std::vector<int> ids = t.encode(s, false);
    for (int id : ids) EXPECT_GT(id, 2) << s;
    EXPECT_EQ(t.decode(ids), s);
  }
}

TEST(Llama2cTokenizer, LongTextIsNotQuadratic) {
  const Tokenizer& t = tok512();
  std::string story = golden(1)["text"].get<std::string>();
  std::string text;
  while (text.size() < 100 * 1024) text += story + "\n";
  std::string same(100 * 1024, 'a');  // one 100 KB word: a long chain of merges

  for (const std::string* s : {&text, &same}) {
    auto t0 = std::chrono::steady_clock::now();
    std::vector<int> ids = t.encode(*s, true);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "encode " << s->size() << " bytes -> " << ids.size() << " tokens in " << secs * 1e3
              << " ms\n";
    EXPECT_EQ(t.decode(ids), *s);
  }
}

TEST(Llama2cVocabErrors, MissingFile) {
  std::string msg = error_of([] { load_llama2c_vocab("/nonexistent/tok.bin", 512); });
  EXPECT_NE(msg.find("/nonexistent/tok.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot open"), std::string::npos) << msg;
}

TEST(Llama2cVocabErrors, Truncated) {
  std::string bytes = file_bytes(shared_path(kTok512));
  for (size_t cut : {size_t(0), size_t(2), size_t(4 + 6), bytes.size() / 2, bytes.size() - 1}) {
    std::string path = write_file("cut" + std::to_string(cut) + ".bin", bytes.substr(0, cut));
    std::string msg = error_of([&] { load_llama2c_vocab(path, 512); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_TRUE(msg.find("truncated") != std::string::npos ||
                msg.find("too short") != std::string::npos ||
                msg.find("tokens, the model expects") != std::string::npos)
        << cut << ": " << msg;
  }
  // Cut mid-piece: the message says which token.
  std::string path = write_file("mid.bin", bytes.substr(0, bytes.size() - 1));
  EXPECT_NE(error_of([&] { load_llama2c_vocab(path, 512); }).find("truncated in token 511"),
            std::string::npos);
}

TEST(Llama2cVocabErrors, VocabSizeMismatch) {
  std::string path = shared_path(kTok512);
  std::string more = error_of([&] { load_llama2c_vocab(path, 600); });
  EXPECT_NE(more.find("tokenizer has 512 tokens, the model expects 600"), std::string::npos)
      << more;
  std::string fewer = error_of([&] { load_llama2c_vocab(path, 300); });
  EXPECT_NE(fewer.find("tokenizer has 512 tokens, the model expects 300"), std::string::npos)
      << fewer;

  std::vector<std::string> pieces;
  for (int i = 0; i < 300; ++i) pieces.push_back("p" + std::to_string(i));
  std::string short_path = write_file("tok300.bin", tokenizer_bin(pieces, 8));
  std::string msg = error_of([&] { load_llama2c_vocab(short_path, 512); });
  EXPECT_NE(msg.find(short_path + ": tokenizer has 300 tokens, the model expects 512"),
            std::string::npos)
      << msg;
  EXPECT_EQ(load_llama2c_vocab(short_path, 300).size(), 300);
}

TEST(Llama2cVocabErrors, BadLengths) {
  std::string ok = tokenizer_bin({"<unk>", "<s>", "</s>", " a"}, 5);
  std::string neg = ok;
  int32_t minus = -7;
  std::memcpy(&neg[4 + 4], &minus, 4);  // token 0's length
  std::string path = write_file("neg.bin", neg);
  std::string msg = error_of([&] { load_llama2c_vocab(path, 4); });
  EXPECT_NE(msg.find("token 0 has length -7"), std::string::npos) << msg;

  std::string huge = ok;
  int32_t big = 1 << 30;
  std::memcpy(&huge[4 + 4], &big, 4);
  path = write_file("huge.bin", huge);
  msg = error_of([&] { load_llama2c_vocab(path, 4); });
  EXPECT_NE(msg.find("token 0 has length 1073741824"), std::string::npos) << msg;

  path = write_file("maxlen.bin", tokenizer_bin({"<unk>"}, -1));
  msg = error_of([&] { load_llama2c_vocab(path, 1); });
  EXPECT_NE(msg.find("max_token_length is -1"), std::string::npos) << msg;

  path = write_file("ok.bin", ok);
  EXPECT_THROW(load_llama2c_vocab(path, 0), Error);
  EXPECT_EQ(load_llama2c_vocab(path, 4).pieces[3], " a");
}

}  // namespace
}  // namespace tapml

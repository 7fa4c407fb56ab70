// load_llama2c: weight order and naming, header validation, exact file size.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "core/error.h"
#include "model/model_file.h"
#include "support/errors.h"
#include "support/shared.h"

namespace tapml {
namespace {

using testing::contains;
using testing::error_of;

struct Header {
  int32_t dim = 8, hidden_dim = 12, n_layers = 2, n_heads = 4, n_kv_heads = 2, vocab_size = 10,
          seq_len = 6;
};

// A checkpoint whose float number k holds the value k, so every tensor's first element
// says where in the file it was read from.
std::vector<uint8_t> checkpoint(const Header& h, size_t n_floats) {
  std::vector<uint8_t> b(28 + 4 * n_floats);
  std::memcpy(b.data(), &h, 28);
  for (size_t k = 0; k < n_floats; ++k) {
    float x = float(k);
    std::memcpy(b.data() + 28 + 4 * k, &x, 4);
  }
  return b;
}

// Float count of the small default checkpoint, spelled out section by section.
size_t floats_of(const Header& h) {
  size_t D = h.dim, H = h.hidden_dim, L = h.n_layers, V = std::abs(h.vocab_size),
         KV = size_t(h.dim) * h.n_kv_heads / h.n_heads, S = h.seq_len, hs = D / h.n_heads;
  size_t n = V * D + L * D + L * D * D + 2 * L * KV * D + L * D * D + L * D + 3 * L * H * D + D +
             2 * S * (hs / 2);
  return h.vocab_size < 0 ? n + V * D : n;
}

ModelFile load(const std::vector<uint8_t>& b) {
  return load_llama2c_memory(nullptr, b.data(), b.size(), "m.bin");
}

TEST(Llama2c, NamesAndOrdersTheWeights) {
  Header h;
  std::vector<uint8_t> b = checkpoint(h, floats_of(h));
  ModelFile m = load(b);
  EXPECT_EQ(m.format, "llama2c");
  EXPECT_EQ(m.arch, "llama");
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.hidden_dim, 12);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.vocab_size, 10);
  EXPECT_EQ(c.max_seq_len, 6);
  EXPECT_EQ(c.head_dim, 2);
  EXPECT_EQ(c.rope_dim, 2);
  EXPECT_EQ(c.rope_base, 10000.0f);
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.rope_pairing, RopePairing::Adjacent);
  EXPECT_TRUE(c.shared_classifier);
  EXPECT_EQ(m.weights.count("output.weight"), 0u);
  EXPECT_EQ(m.weights.size(), 1u + 9u * 2u + 1u);

  // D=8, H=12, KV=4, V=10: offsets in floats, layer by layer within each section.
  struct Expect {
    std::string name;
    Shape shape;
    float first;
  };
  const Expect expected[] = {
      {"token_embd.weight", {10, 8}, 0},         {"blk.0.attn_norm.weight", {8}, 80},
      {"blk.1.attn_norm.weight", {8}, 88},       {"blk.0.attn_q.weight", {8, 8}, 96},
      {"blk.1.attn_q.weight", {8, 8}, 160},      {"blk.0.attn_k.weight", {4, 8}, 224},
      {"blk.1.attn_k.weight", {4, 8}, 256},      {"blk.0.attn_v.weight", {4, 8}, 288},
      {"blk.0.attn_output.weight", {8, 8}, 352}, {"blk.1.attn_output.weight", {8, 8}, 416},
      {"blk.0.ffn_norm.weight", {8}, 480},       {"blk.0.ffn_gate.weight", {12, 8}, 496},
      {"blk.1.ffn_gate.weight", {12, 8}, 592},   {"blk.0.ffn_down.weight", {8, 12}, 688},
      {"blk.0.ffn_up.weight", {12, 8}, 880},     {"blk.1.ffn_up.weight", {12, 8}, 976},
      {"output_norm.weight", {8}, 1072},
  };
  for (const Expect& e : expected) {
    ASSERT_EQ(m.weights.count(e.name), 1u) << e.name;
    const Tensor& t = m.weights.at(e.name);
    EXPECT_EQ(t.shape(), e.shape) << e.name;
    EXPECT_EQ(t.dtype(), DType::F32);
    EXPECT_EQ(t.get_f32(0), e.first) << e.name;
    // Borrowed in place, not copied.
    EXPECT_EQ(reinterpret_cast<const uint8_t*>(t.bytes()), b.data() + 28 + 4 * size_t(e.first));
  }
  ASSERT_NO_THROW(validate_model(m));
}

TEST(Llama2c, SeparateClassifierFollowsTheRopeTables) {
  Header h;
  h.vocab_size = -10;
  size_t n = floats_of(h);
  std::vector<uint8_t> b = checkpoint(h, n);  // the weights borrow it
  ModelFile m = load(b);
  EXPECT_FALSE(m.config.shared_classifier);
  EXPECT_EQ(m.config.vocab_size, 10);
  ASSERT_EQ(m.weights.count("output.weight"), 1u);
  EXPECT_EQ(m.weights.at("output.weight").shape(), Shape({10, 8}));
  EXPECT_EQ(m.weights.at("output.weight").get_f32(0), float(n - 80));
  ASSERT_NO_THROW(validate_model(m));
}

TEST(Llama2c, RejectsTruncatedAndOverlongFiles) {
  Header h;
  size_t n = floats_of(h);
  std::vector<uint8_t> b = checkpoint(h, n);
  std::vector<uint8_t> short_by_4(b.begin(), b.end() - 4);
  EXPECT_EQ(error_of([&] { load(short_by_4); }),
            "m.bin: truncated: needs " + std::to_string(b.size()) + " bytes, file has " +
                std::to_string(b.size() - 4));
  std::vector<uint8_t> long_by_8 = b;
  long_by_8.resize(b.size() + 8);
  EXPECT_TRUE(contains(
      error_of([&] { load(long_by_8); }),
      "m.bin: 8 extra bytes after the weights (expected " + std::to_string(b.size()) + " bytes"));
}

TEST(Llama2c, EveryTruncationIsAnError) {
  Header h;
  std::vector<uint8_t> full = checkpoint(h, floats_of(h));
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + long(n));
    EXPECT_TRUE(contains(error_of([&] { load(cut); }), "m.bin: truncated: needs")) << n;
  }
}

TEST(Llama2c, RejectsBadHeaders) {
  auto header_error = [](Header h) {
    std::vector<uint8_t> b = checkpoint(h, 64);
    return error_of([&] { load(b); });
  };
  Header h;
  h.dim = 0;
  EXPECT_TRUE(contains(header_error(h), "m.bin: bad llama2.c header: dim 0 is not positive"));
  h = {};
  h.n_heads = -4;
  EXPECT_TRUE(contains(header_error(h), "n_heads -4 is not positive"));
  h = {};
  h.vocab_size = 0;
  EXPECT_TRUE(contains(header_error(h), "vocab_size 0 is not positive"));
  h = {};
  h.seq_len = 1 << 21;
  EXPECT_TRUE(contains(header_error(h), "seq_len 2097152 is absurdly large"));
  h = {};
  h.vocab_size = -(1 << 30);
  EXPECT_TRUE(contains(header_error(h), "vocab_size 1073741824 is absurdly large"));
  h = {};
  h.n_heads = 3;
  EXPECT_TRUE(contains(header_error(h), "dim 8 is not divisible by n_heads 3"));
  h = {};
  h.n_kv_heads = 3;
  EXPECT_TRUE(contains(header_error(h), "n_heads 4 is not divisible by n_kv_heads 3"));
  h = {};
  h.n_heads = 8;
  h.n_kv_heads = 8;
  EXPECT_TRUE(contains(header_error(h), "head size 1 (dim / n_heads) is odd"));
  // Every field at its limit: the byte count overflows and is refused, not wrapped.
  h = {1 << 20, 1 << 20, 1 << 20, 1 << 19, 1 << 19, -(1 << 20), 1 << 20};
  EXPECT_TRUE(contains(header_error(h), "the weights it describes overflow 64-bit sizes"));
  // Large but representable: an honest truncation.
  h = {1 << 20, 1 << 20, 1, 1 << 19, 1 << 19, -(1 << 20), 1 << 20};
  EXPECT_TRUE(contains(header_error(h), "truncated: needs 39582439571484 bytes"));
  std::vector<uint8_t> tiny(20, 0);
  EXPECT_TRUE(contains(error_of([&] { load(tiny); }), "truncated: needs the 28-byte"));
}

TEST(Llama2c, RejectsLaterExportVersions) {
  std::vector<uint8_t> b(256, 0);
  uint32_t magic = 0x616b3432, version = 1;
  std::memcpy(b.data(), &magic, 4);
  std::memcpy(b.data() + 4, &version, 4);
  EXPECT_TRUE(contains(error_of([&] { load(b); }),
                       "llama2.c export version 1 (magic \"ak42\") is not supported"));
}

TEST(Llama2c, LoadsFromAFileAndKeepsItMapped) {
  Header h;
  std::vector<uint8_t> b = checkpoint(h, floats_of(h));
  std::string path = testing::temp_dir() + "/m.bin";
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  Tensor q;
  {
    ModelFile m = load_llama2c(path);
    EXPECT_EQ(m.path, path);
    q = m.weights.at("blk.1.attn_q.weight");
  }
  EXPECT_EQ(q.get_f32(63), 160.0f + 63.0f);
  EXPECT_TRUE(contains(error_of([] { load_llama2c("/nonexistent.bin"); }),
                       "/nonexistent.bin: cannot open: no such file"));
}

}  // namespace
}  // namespace tapml

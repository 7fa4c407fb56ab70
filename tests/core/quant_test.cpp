#include "core/quant.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace tapml {
namespace {

using namespace quant;

// ---------------------------------------------------------------- the table

struct Expected {
  QuantType type;
  uint32_t id;
  int64_t elems;
  size_t bytes;
  const char* name;
};

// ggml's ids, block sizes and names (ggml.c's type_traits).
constexpr Expected kExpected[] = {
    {QuantType::Q4_0, 2, 32, 18, "q4_0"},    {QuantType::Q4_1, 3, 32, 20, "q4_1"},
    {QuantType::Q5_0, 6, 32, 22, "q5_0"},    {QuantType::Q5_1, 7, 32, 24, "q5_1"},
    {QuantType::Q8_0, 8, 32, 34, "q8_0"},    {QuantType::Q2_K, 10, 256, 84, "q2_K"},
    {QuantType::Q3_K, 11, 256, 110, "q3_K"}, {QuantType::Q4_K, 12, 256, 144, "q4_K"},
    {QuantType::Q5_K, 13, 256, 176, "q5_K"}, {QuantType::Q6_K, 14, 256, 210, "q6_K"},
};

TEST(QuantTable, IdsSizesAndNames) {
  ASSERT_EQ(std::size(kQuantTypes), std::size(kExpected));
  for (size_t i = 0; i < std::size(kExpected); ++i) {
    const Expected& e = kExpected[i];
    SCOPED_TRACE(e.name);
    EXPECT_EQ(kQuantTypes[i], e.type);
    EXPECT_EQ(uint32_t(e.type), e.id);
    EXPECT_EQ(quant_block_elems(e.type), e.elems);
    EXPECT_EQ(quant_block_bytes(e.type), e.bytes);
    EXPECT_EQ(quant_name(e.type), e.name);
    EXPECT_EQ(quant_from_ggml_id(e.id), e.type);
    EXPECT_EQ(quant_from_name(e.name), e.type);
    EXPECT_EQ(quant_row_bytes(e.type, 0), 0u);
    EXPECT_EQ(quant_row_bytes(e.type, 4 * e.elems), 4 * e.bytes);
    EXPECT_THROW(quant_row_bytes(e.type, e.elems + 1), Error);
    EXPECT_THROW(quant_row_bytes(e.type, -e.elems), Error);
  }
  // Other ggml types: f32, f16, q4_2/q4_3 (removed), q8_1, q8_K, the i-quants, bf16, ...
  for (uint32_t id : {0u, 1u, 4u, 5u, 9u, 15u, 16u, 23u, 30u, 39u, 1000u})
    EXPECT_FALSE(quant_from_ggml_id(id)) << id;
  for (const char* name : {"f32", "q8_K", "Q4_0", "q4_k", ""})
    EXPECT_FALSE(quant_from_name(name)) << name;
}

TEST(QuantTable, BlockLayoutsAreGgmls) {
  EXPECT_EQ(sizeof(BlockQ4_0), 18u);
  EXPECT_EQ(sizeof(BlockQ4_1), 20u);
  EXPECT_EQ(sizeof(BlockQ5_0), 22u);
  EXPECT_EQ(sizeof(BlockQ5_1), 24u);
  EXPECT_EQ(sizeof(BlockQ8_0), 34u);
  EXPECT_EQ(sizeof(BlockQ2_K), 84u);
  EXPECT_EQ(sizeof(BlockQ3_K), 110u);
  EXPECT_EQ(sizeof(BlockQ4_K), 144u);
  EXPECT_EQ(sizeof(BlockQ5_K), 176u);
  EXPECT_EQ(sizeof(BlockQ6_K), 210u);
  // Field offsets as in ggml-common.h (the K-quants keep their f16 fields last or first).
  EXPECT_EQ(offsetof(BlockQ4_1, qs), 4u);
  EXPECT_EQ(offsetof(BlockQ5_0, qh), 2u);
  EXPECT_EQ(offsetof(BlockQ5_0, qs), 6u);
  EXPECT_EQ(offsetof(BlockQ5_1, qh), 4u);
  EXPECT_EQ(offsetof(BlockQ5_1, qs), 8u);
  EXPECT_EQ(offsetof(BlockQ2_K, qs), 16u);
  EXPECT_EQ(offsetof(BlockQ2_K, d), 80u);
  EXPECT_EQ(offsetof(BlockQ2_K, dmin), 82u);
  EXPECT_EQ(offsetof(BlockQ3_K, qs), 32u);
  EXPECT_EQ(offsetof(BlockQ3_K, scales), 96u);
  EXPECT_EQ(offsetof(BlockQ3_K, d), 108u);
  EXPECT_EQ(offsetof(BlockQ4_K, scales), 4u);
  EXPECT_EQ(offsetof(BlockQ4_K, qs), 16u);
  EXPECT_EQ(offsetof(BlockQ5_K, qh), 16u);
  EXPECT_EQ(offsetof(BlockQ5_K, qs), 48u);
  EXPECT_EQ(offsetof(BlockQ6_K, qh), 128u);
  EXPECT_EQ(offsetof(BlockQ6_K, scales), 192u);
  EXPECT_EQ(offsetof(BlockQ6_K, d), 208u);
}

TEST(QuantRow, RejectsPartialBlocks) {
  std::vector<float> x(300);
  std::vector<uint8_t> b(1000);
  for (QuantType t : kQuantTypes) {
    const int64_t bad = quant_block_elems(t) + 16;
    EXPECT_THROW(quantize_row(t, x.data(), b.data(), bad), Error) << quant_name(t);
    EXPECT_THROW(dequantize_row(t, b.data(), x.data(), bad), Error) << quant_name(t);
  }
}

// ---------------------------------------------------------------- fixtures from llama.cpp

// tests/data/quant, written by scripts/make_quant_fixtures.py from llama-quantize's files, the
// peer's ggml_quantize_chunk and gguf-py's dequantizers (see the script for what each holds).
const std::string kDir = std::string(TAPML_SOURCE_DIR) + "/tests/data/quant/";

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

std::vector<float> read_f32(const std::string& path) {
  std::vector<uint8_t> b = read_bytes(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

nlohmann::json manifest() {
  std::vector<uint8_t> b = read_bytes(kDir + "manifest.json");
  return nlohmann::json::parse(b.begin(), b.end());
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)v);
  return buf;
}

std::string label(const nlohmann::json& f) {
  return f["blocks"].get<std::string>() + " (" + f["kind"].get<std::string>() +
         (f.contains("ftype") ? " " + f["ftype"].get<std::string>() : "") + ")";
}

// Every fixture dequantizes bit-identically to gguf-py: the XXH3_64 of the whole f32 output
// and, for a readable failure, the first values' bit patterns.
TEST(QuantFixtures, DequantizeIsBitIdenticalToGgufPy) {
  const nlohmann::json m = manifest();
  std::map<std::string, std::set<std::string>> kinds_per_type;
  int checked = 0;
  for (const nlohmann::json& f : m["fixtures"]) {
    SCOPED_TRACE(label(f));
    const std::optional<QuantType> t = quant_from_name(f["type"].get<std::string>());
    ASSERT_TRUE(t);
    ASSERT_EQ(uint32_t(*t), f["ggml_type"].get<uint32_t>());
    const int64_t n = f["elems"].get<int64_t>();
    const std::vector<uint8_t> blocks = read_bytes(kDir + f["blocks"].get<std::string>());
    ASSERT_EQ(blocks.size(), quant_row_bytes(*t, n));
    std::vector<float> out(static_cast<size_t>(n));
    dequantize_row(*t, blocks.data(), out.data(), n);
    const std::string head = f["head"];  // 8 hex digits a value
    ASSERT_EQ(head.size() % 8, 0u);
    for (size_t i = 0; i < head.size() / 8 && i < out.size(); ++i) {
      uint32_t bits;
      std::memcpy(&bits, &out[i], 4);
      ASSERT_EQ(std::stoul(head.substr(8 * i, 8), nullptr, 16), bits)
          << "value " << i << ": " << out[i];
    }
    EXPECT_EQ(hex64(XXH3_64bits(out.data(), out.size() * 4)), f["f32_xxh3_64"]);
    kinds_per_type[f["type"]].insert(f["kind"]);
    ++checked;
  }
  // Every type is covered by a llama-quantize tensor, the edge rows and random bytes.
  for (QuantType t : kQuantTypes)
    EXPECT_EQ(kinds_per_type[std::string(quant_name(t))].size(), 3u) << quant_name(t);
  EXPECT_GE(checked, 3 * int(std::size(kQuantTypes)));
}

// quantize_row gives llama-quantize's blocks (no imatrix), bit for bit, for every type: for the
// K-quants too, since llama-quantize calls ggml's quantize_row_*_ref then.
TEST(QuantFixtures, QuantizeIsBitIdenticalToLlamaQuantize) {
  const nlohmann::json m = manifest();
  int checked = 0;
  for (const nlohmann::json& f : m["fixtures"]) {
    if (!f.contains("source")) continue;
    SCOPED_TRACE(label(f));
    const QuantType t = *quant_from_name(f["type"].get<std::string>());
    const int64_t n = f["source_elems"].get<int64_t>();
    const std::vector<float> x = read_f32(kDir + f["source"].get<std::string>());
    ASSERT_GE(int64_t(x.size()), n);
    const std::vector<uint8_t> want = read_bytes(kDir + f["blocks"].get<std::string>());
    const size_t bytes = quant_row_bytes(t, n);
    ASSERT_GE(want.size(), bytes);
    std::vector<uint8_t> got(bytes);
    quantize_row(t, x.data(), got.data(), n);
    const size_t bb = quant_block_bytes(t);
    int64_t differing = 0, first = -1;
    for (size_t b = 0; b < bytes / bb; ++b) {
      if (std::memcmp(got.data() + b * bb, want.data() + b * bb, bb) != 0) {
        if (first < 0) first = int64_t(b);
        ++differing;
      }
    }
    EXPECT_EQ(differing, 0) << "of " << bytes / bb << " blocks; first at block " << first;
    ++checked;
  }
  EXPECT_GE(checked, 2 * int(std::size(kQuantTypes)));
}

// ---------------------------------------------------------------- round trips

// The largest |x - deq(q(x))| a block of absmax a may show. d16(v) is the largest error of v
// stored as f16 (relative 2^-11, absolute 2^-25 among subnormals).
//  legacy, symmetric (Q4_0, Q5_0): the step is d = a/k (k = 8, 16), signed by the value of
//    largest magnitude, which maps to level -k exactly; a value of the other sign may reach +k
//    and clip to k-1: one step. Plus |level| <= k times d's f16 error.
//  legacy, with a min (Q4_1, Q5_1): d = (max - min)/k <= 2a/k, half a step of rounding, plus
//    k times d's f16 error and the f16 error of the min.
//  Q8_0: d = a/127, half a step, plus 127 times d's f16 error.
//  K-quants: the scales come out of a search (ggml's make_q*_quants) and are stored in 4, 6 or
//    8 bits under an f16 super-scale, so the format gives no closed bound; the bound is c steps
//    of the super-block's largest group, a/nmax, with c the worst case measured on these and
//    a few more distributions (Q2_K 1.7, Q3_K 1.05, Q4_K 1.58, Q5_K 1.96, Q6_K 0.61) rounded up.
double d16(double v) { return std::max(std::fabs(v) * 0x1p-11, 0x1p-25); }

double error_bound(QuantType t, double a) {
  switch (t) {
    case QuantType::Q4_0:
      return a / 8 + 8 * d16(a / 8);
    case QuantType::Q5_0:
      return a / 16 + 16 * d16(a / 16);
    case QuantType::Q4_1:
      return a / 15 + 15 * d16(2 * a / 15) + d16(a);
    case QuantType::Q5_1:
      return a / 31 + 31 * d16(2 * a / 31) + d16(a);
    case QuantType::Q8_0:
      return a / 254 + 127 * d16(a / 127);
    case QuantType::Q2_K:
      return 2.5 * a / 3;
    case QuantType::Q3_K:
      return 1.5 * a / 4;
    case QuantType::Q4_K:
      return 2.5 * a / 15;
    case QuantType::Q5_K:
      return 2.5 * a / 31;
    case QuantType::Q6_K:
      return 1.0 * a / 32;
  }
  return 0;
}

struct Distribution {
  const char* name;
  std::function<std::vector<float>(std::mt19937_64&, size_t)> make;
};

std::vector<Distribution> distributions() {
  auto each = [](auto f) {
    return [f](std::mt19937_64& g, size_t n) {
      std::vector<float> v(n);
      for (size_t i = 0; i < n; ++i) v[i] = float(f(g, i));
      return v;
    };
  };
  return {
      {"normal", each([](auto& g, size_t) { return std::normal_distribution<>(0, 1)(g); })},
      {"uniform", each([](auto& g, size_t) { return std::uniform_real_distribution<>(-1, 1)(g); })},
      {"laplace", each([](auto& g, size_t) {
         double e = std::exponential_distribution<>(1)(g);
         return std::bernoulli_distribution(0.5)(g) ? e : -e;
       })},
      {"sparse", each([](auto& g, size_t) {
         double v = std::normal_distribution<>(0, 1)(g);
         return std::bernoulli_distribution(0.2)(g) ? v : 0.0;
       })},
      {"offset", each([](auto& g, size_t) { return std::normal_distribution<>(3, 1)(g); })},
      // Groups of 16 whose magnitudes span three decades, as in real weight rows.
      {"scaled groups",
       [](std::mt19937_64& g, size_t n) {
         std::vector<float> v(n);
         double s = 1;
         for (size_t i = 0; i < n; ++i) {
           if (i % 16 == 0) s = std::pow(10.0, std::uniform_real_distribution<>(-3, 0)(g));
           v[i] = float(s * std::normal_distribution<>(0, 1)(g));
         }
         return v;
       }},
  };
}

TEST(QuantRoundTrip, ErrorWithinTheFormatsBound) {
  const size_t n = 256 * 128;
  for (QuantType t : kQuantTypes) {
    const int64_t qk = quant_block_elems(t);
    std::mt19937_64 g{uint64_t(t)};
    for (const Distribution& d : distributions()) {
      SCOPED_TRACE(std::string(quant_name(t)) + " " + d.name);
      const std::vector<float> x = d.make(g, n);
      std::vector<uint8_t> blocks(quant_row_bytes(t, int64_t(n)));
      std::vector<float> y(n);
      quantize_row(t, x.data(), blocks.data(), int64_t(n));
      dequantize_row(t, blocks.data(), y.data(), int64_t(n));
      double worst = 0;  // the largest error as a share of its block's bound
      for (size_t b = 0; b < n / size_t(qk); ++b) {
        const float* xb = &x[b * size_t(qk)];
        const float* yb = &y[b * size_t(qk)];
        double a = 0;
        for (int64_t i = 0; i < qk; ++i) a = std::max(a, double(std::fabs(xb[i])));
        const double bound = error_bound(t, a);
        for (int64_t i = 0; i < qk; ++i) {
          const double e = std::fabs(double(xb[i]) - double(yb[i]));
          if (a == 0) {
            ASSERT_EQ(yb[i], 0.0f) << "block " << b << " is all zeros";
          } else {
            worst = std::max(worst, e / bound);
          }
        }
      }
      EXPECT_LE(worst, 1.0);
    }
  }
}

// More bits, less error: the types' RMS errors on normal data are ordered as their bits.
TEST(QuantRoundTrip, MoreBitsLessError) {
  const size_t n = 256 * 256;
  std::mt19937_64 g(42);
  const std::vector<float> x = distributions()[0].make(g, n);
  auto rms = [&](QuantType t) {
    std::vector<uint8_t> blocks(quant_row_bytes(t, int64_t(n)));
    std::vector<float> y(n);
    quantize_row(t, x.data(), blocks.data(), int64_t(n));
    dequantize_row(t, blocks.data(), y.data(), int64_t(n));
    double s = 0;
    for (size_t i = 0; i < n; ++i) s += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
    return std::sqrt(s / double(n));
  };
  const QuantType order[] = {QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K,
                             QuantType::Q5_K, QuantType::Q6_K, QuantType::Q8_0};
  for (size_t i = 1; i < std::size(order); ++i)
    EXPECT_LT(rms(order[i]), rms(order[i - 1])) << quant_name(order[i]);
  EXPECT_LT(rms(QuantType::Q4_1), rms(QuantType::Q4_0));
  EXPECT_LT(rms(QuantType::Q5_0), rms(QuantType::Q4_0));
  EXPECT_LT(rms(QuantType::Q5_1), rms(QuantType::Q5_0));
}

// Zeros round-trip to zeros; blocks need no alignment.
TEST(QuantRoundTrip, ZerosAndUnalignedBlocks) {
  for (QuantType t : kQuantTypes) {
    SCOPED_TRACE(quant_name(t));
    const int64_t n = 512;
    std::vector<float> zeros(n, 0.0f), y(n, 1.0f);
    std::vector<uint8_t> blocks(quant_row_bytes(t, n));
    quantize_row(t, zeros.data(), blocks.data(), n);
    dequantize_row(t, blocks.data(), y.data(), n);
    for (float v : y) ASSERT_EQ(std::fabs(v), 0.0f);

    std::mt19937_64 g(7);
    const std::vector<float> x = distributions()[0].make(g, size_t(n));
    quantize_row(t, x.data(), blocks.data(), n);
    dequantize_row(t, blocks.data(), y.data(), n);
    std::vector<uint8_t> shifted(blocks.size() + 1);
    std::memcpy(shifted.data() + 1, blocks.data(), blocks.size());
    std::vector<float> y2(n);
    dequantize_row(t, shifted.data() + 1, y2.data(), n);
    EXPECT_EQ(std::memcmp(y.data(), y2.data(), size_t(n) * 4), 0);
  }
}

}  // namespace
}  // namespace tapml

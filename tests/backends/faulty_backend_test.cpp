// The faulty backend against plain cpu: each fault changes its op's output the way its bug
// would and only where it applies; the site filter confines it; bad URIs say what is wrong;
// and on stories260K we see which faults change the greedy tokens.
#include "backends/faulty/faulty_backend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "backend/host_call.h"
#include "backends/builtin.h"
#include "model/model_file.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/errors.h"
#include "support/shared.h"
#include "tokenizer/load.h"

namespace tapml {
namespace {

using testing::contains;
using testing::error_of;

// A host tensor to feed a backend: f32 values, or i32 ids when `ints` is set.
struct Input {
  Shape shape;
  std::vector<float> values;
  std::vector<int32_t> ints;
  DType dtype() const { return ints.empty() ? DType::F32 : DType::I32; }
};

Input f32(Shape shape, std::vector<float> v) { return {std::move(shape), std::move(v), {}}; }
Input i32(Shape shape, std::vector<int32_t> v) { return {std::move(shape), {}, std::move(v)}; }

std::vector<float> normal(int64_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = dist(gen);
  return v;
}

// Runs one call on `be` and returns every output as f32; an in-place output (kv_store's
// caches) comes back as the whole updated input.
std::vector<std::vector<float>> run_op(Backend& be, const std::string& op, const Attrs& attrs,
                                       const std::vector<Input>& inputs,
                                       const std::string& site = "blk.0.test") {
  std::vector<Tensor> tensors;
  for (const Input& in : inputs)
    tensors.push_back(in.ints.empty() ? Tensor::from_f32(in.shape, in.values)
                                      : Tensor::from_i32(in.shape, in.ints));
  std::vector<std::vector<float>> result;
  for (const Tensor& t : run_host_call(be, parse_op(op), attrs, tensors, site).outputs)
    result.push_back(t.to_f32());
  return result;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i]));
  return d;
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

bool any_nan(const std::vector<float>& v) {
  for (float x : v)
    if (std::isnan(x)) return true;
  return false;
}

class Faulty : public ::testing::Test {
 protected:
  // The op's first output on faulty:cpu?fault=NAME and on cpu.
  std::vector<float> faulty(const std::string& fault, const std::string& op, const Attrs& attrs,
                            const std::vector<Input>& in, size_t output = 0) {
    auto be = open_backend("faulty:cpu?fault=" + fault);
    return run_op(*be, op, attrs, in)[output];
  }
  std::vector<float> plain(const std::string& op, const Attrs& attrs, const std::vector<Input>& in,
                           size_t output = 0) {
    return run_op(*cpu_, op, attrs, in)[output];
  }
  std::unique_ptr<Backend> cpu_ = open_backend("cpu?threads=1");
};

Attrs attention_attrs(int64_t H, int64_t KV, int64_t hd) {
  return {{"n_heads", double(H)},
          {"n_kv_heads", double(KV)},
          {"head_dim", double(hd)},
          {"scale", 1.0 / std::sqrt(double(hd))}};
}

TEST_F(Faulty, MatmulTailDropsTheLastKMod8Products) {
  const int64_t T = 3, N = 5;
  for (int64_t K : {12, 16}) {
    auto x = normal(T * K, 1), w = normal(N * K, 2);
    std::vector<Input> in{f32({T, K}, x), f32({N, K}, w)};
    auto got = faulty("matmul_tail", "matmul", {}, in);
    if (K % 8 == 0) {
      EXPECT_EQ(got, plain("matmul", {}, in)) << "K=" << K;
      continue;
    }
    EXPECT_GT(max_abs_diff(got, plain("matmul", {}, in)), 1e-2) << "K=" << K;
    // The same as an honest matmul over the first 8 columns.
    std::vector<float> x8, w8;
    for (int64_t r = 0; r < T; ++r) x8.insert(x8.end(), x.begin() + r * K, x.begin() + r * K + 8);
    for (int64_t r = 0; r < N; ++r) w8.insert(w8.end(), w.begin() + r * K, w.begin() + r * K + 8);
    EXPECT_LT(max_abs_diff(got, plain("matmul", {}, {f32({T, 8}, x8), f32({N, 8}, w8)})), 1e-5);
  }
}

TEST_F(Faulty, KvOffsetStoresOneRowLateFromPosition2) {
  const int64_t S = 8, C = 4;
  std::vector<float> empty(S * C, 0.0f);
  std::vector<float> k{1, 2, 3, 4}, v{5, 6, 7, 8};
  for (int32_t pos : {0, 1, 3, 7}) {
    std::vector<Input> in{f32({S, C}, empty), f32({S, C}, empty), f32({1, C}, k), f32({1, C}, v),
                          i32({1}, {pos})};
    for (size_t cache = 0; cache < 2; ++cache) {
      auto got = faulty("kv_offset", "kv_store", {}, in, cache);
      auto want = plain("kv_store", {}, in, cache);
      // pos 7 is the last row: one further would leave the cache, so the store stays put.
      if (pos < 2 || pos == S - 1) {
        EXPECT_EQ(got, want) << "pos " << pos;
        continue;
      }
      const std::vector<float>& row = cache == 0 ? k : v;
      std::vector<float> expected = empty;
      std::copy(row.begin(), row.end(), expected.begin() + (pos + 1) * C);
      EXPECT_EQ(got, expected) << "pos " << pos << ": row " << pos + 1 << " gets the store";
    }
  }
}

TEST_F(Faulty, SoftmaxF16OverflowsOnLargeScoresAndStaysCloseOnSmallOnes) {
  const int64_t T = 2, P = 5, H = 2, KV = 2, hd = 16;
  Attrs a = attention_attrs(H, KV, hd);
  // Raw q.k = 16 * 70 * 70 = 78400 > 65504; scaled it would be 19600, which f16 holds.
  std::vector<Input> large{f32({T, H * hd}, std::vector<float>(T * H * hd, 70.0f)),
                           f32({P, KV * hd}, std::vector<float>(P * KV * hd, 70.0f)),
                           f32({P, KV * hd}, normal(P * KV * hd, 3))};
  EXPECT_TRUE(all_finite(plain("attention", a, large)));
  EXPECT_FALSE(all_finite(faulty("softmax_f16", "attention", a, large)));

  std::vector<Input> small{f32({T, H * hd}, normal(T * H * hd, 4)),
                           f32({P, KV * hd}, normal(P * KV * hd, 5)),
                           f32({P, KV * hd}, normal(P * KV * hd, 6))};
  auto got = faulty("softmax_f16", "attention", a, small);
  auto want = plain("attention", a, small);
  EXPECT_TRUE(all_finite(got));
  EXPECT_LT(max_abs_diff(got, want), 1e-2);
  EXPECT_GT(max_abs_diff(got, want), 0.0) << "f16 rounding should show at all";
}

TEST_F(Faulty, RopePairingRunsTheOtherPairing) {
  const int64_t T = 3, H = 2, hd = 8;
  for (int pairing : {0, 1}) {
    auto attrs = [&](int p) {
      return Attrs{{"n_heads", double(H)},
                   {"head_dim", double(hd)},
                   {"rope_dim", double(hd)},
                   {"base", 10000.0},
                   {"pairing", double(p)}};
    };
    std::vector<Input> in{f32({T, H * hd}, normal(T * H * hd, 7)), i32({T}, {3, 4, 5})};
    auto got = faulty("rope_pairing", "rope", attrs(pairing), in);
    EXPECT_EQ(got, plain("rope", attrs(1 - pairing), in)) << "pairing " << pairing;
    EXPECT_GT(max_abs_diff(got, plain("rope", attrs(pairing), in)), 1e-2) << "pairing " << pairing;
  }
}

TEST_F(Faulty, RopePositionRotatesOneStepLateSoQDotKIsUnchanged) {
  const int64_t T = 4, H = 2, hd = 8;
  for (int pairing : {0, 1}) {
    Attrs a{{"n_heads", double(H)},
            {"head_dim", double(hd)},
            {"rope_dim", double(hd)},
            {"base", 10000.0},
            {"pairing", double(pairing)}};
    const std::vector<float> q = normal(T * H * hd, 11), k = normal(T * H * hd, 12);
    const std::vector<int32_t> pos{0, 1, 2, 7};
    auto faulty_q = faulty("rope_position", "rope", a, {f32({T, H * hd}, q), i32({T}, pos)});
    auto faulty_k = faulty("rope_position", "rope", a, {f32({T, H * hd}, k), i32({T}, pos)});
    auto right_q = plain("rope", a, {f32({T, H * hd}, q), i32({T}, pos)});
    auto right_k = plain("rope", a, {f32({T, H * hd}, k), i32({T}, pos)});
    // Exactly the right kernel one position later, and far from the right answer...
    EXPECT_EQ(faulty_q, plain("rope", a, {f32({T, H * hd}, q), i32({T}, {1, 2, 3, 8})}));
    EXPECT_GT(max_abs_diff(faulty_q, right_q), 1e-2) << "pairing " << pairing;
    // ...yet every q.k of a head, the only thing attention reads of them, is unchanged.
    double worst = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < T; ++j)
        for (int64_t h = 0; h < H; ++h) {
          double wrong = 0, right = 0;
          for (int64_t i = 0; i < hd; ++i) {
            const size_t qi = size_t(t * H * hd + h * hd + i), ki = size_t(j * H * hd + h * hd + i);
            wrong += double(faulty_q[qi]) * faulty_k[ki];
            right += double(right_q[qi]) * right_k[ki];
          }
          worst = std::max(worst, std::fabs(wrong - right));
        }
    EXPECT_LT(worst, 1e-5) << "pairing " << pairing;
  }
}

TEST_F(Faulty, F16ReaderTruncatesF16WeightsToBf16AndPassesOtherTypes) {
  const int64_t T = 3, K = 40, N = 5, V = 6;
  const std::vector<float> x = normal(T * K, 13), w = normal(N * K, 14);
  auto run = [&](const std::string& uri, const std::string& op, const std::vector<Tensor>& in) {
    auto be = open_backend(uri);
    return run_host_call(*be, parse_op(op), {}, in, "blk.0.test").outputs.at(0).to_f32();
  };
  // What the faulty reader sees: each f16 value cut to bf16 (low 16 bits of its f32 dropped).
  const Tensor w16 = Tensor::from_f32_as(DType::F16, {N, K}, w);
  std::vector<float> cut = w16.to_f32();
  int changed = 0;
  for (float& v : cut) {
    uint32_t bits = 0;
    std::memcpy(&bits, &v, 4);
    const float before = v;
    bits &= 0xFFFF0000u;
    std::memcpy(&v, &bits, 4);
    changed += v != before;
  }
  EXPECT_GT(changed, N * K / 2);  // most f16 values use their low mantissa bits
  const Tensor xt = Tensor::from_f32({T, K}, x);
  auto got = run("faulty:cpu?fault=f16_reader", "matmul", {xt, w16});
  auto want = run("cpu", "matmul", {xt, Tensor::from_f32({N, K}, cut)});
  EXPECT_LT(max_abs_diff(got, want), 1e-5);  // the truncated weights, summed correctly
  EXPECT_GT(max_abs_diff(got, run("cpu", "matmul", {xt, w16})), 1e-4);
  // The embedding's rows are those values exactly.
  const std::vector<int32_t> ids{4, 0, 4};
  auto rows =
      run("faulty:cpu?fault=f16_reader", "embedding",
          {Tensor::from_f32_as(DType::F16, {V, K}, normal(V * K, 15)), Tensor::from_i32({3}, ids)});
  auto table = Tensor::from_f32_as(DType::F16, {V, K}, normal(V * K, 15)).to_f32();
  for (size_t r = 0; r < ids.size(); ++r)
    for (int64_t i = 0; i < K; ++i) {
      uint32_t bits = 0;
      std::memcpy(&bits, &table[size_t(ids[r] * K + i)], 4);
      bits &= 0xFFFF0000u;
      float v = 0;
      std::memcpy(&v, &bits, 4);
      ASSERT_EQ(rows[r * size_t(K) + size_t(i)], v) << "row " << r << " element " << i;
    }
  // f32 and bf16 weights are read right: the inner kernel's result, bit for bit.
  for (DType t : {DType::F32, DType::BF16}) {
    const Tensor wt = Tensor::from_f32_as(t, {N, K}, w);
    EXPECT_EQ(run("faulty:cpu?fault=f16_reader", "matmul", {xt, wt}),
              run("cpu", "matmul", {xt, wt}))
        << dtype_name(t);
  }
}

TEST_F(Faulty, RmsnormEpsIgnoredShowsOnRowsWithATinyMeanSquare) {
  const int64_t D = 8;
  std::vector<float> x = normal(2 * D, 8);
  for (int64_t d = 0; d < D; ++d) x[size_t(d)] *= 1e-4f;  // row 0: mean square ~1e-8 << eps
  std::vector<Input> in{f32({2, D}, x), f32({D}, normal(D, 9))};
  Attrs a{{"eps", 1e-5}};
  auto got = faulty("rmsnorm_eps", "rmsnorm", a, in);
  auto want = plain("rmsnorm", a, in);
  std::vector<float> got0(got.begin(), got.begin() + D), want0(want.begin(), want.begin() + D);
  std::vector<float> got1(got.begin() + D, got.end()), want1(want.begin() + D, want.end());
  EXPECT_GT(max_abs_diff(got0, want0), 0.1);  // normalized to unit scale, not damped by eps
  EXPECT_LT(max_abs_diff(got1, want1), 1e-4);
}

TEST_F(Faulty, SiluApproxIsAHardSigmoid) {
  std::vector<float> g{-5, -1, 0, 0.5f, 1, 3}, u{1, 1, 1, 1, 1, 2};
  std::vector<Input> in{f32({1, 6}, g), f32({1, 6}, u)};
  auto got = faulty("silu_approx", "swiglu", {}, in);
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_FLOAT_EQ(got[i], g[i] * std::clamp(0.5f + g[i] / 4, 0.0f, 1.0f) * u[i]) << g[i];
  EXPECT_GT(max_abs_diff(got, plain("swiglu", {}, in)), 1e-2);
}

TEST_F(Faulty, GqaMapReadsTheWrongKvHead) {
  const int64_t T = 2, P = 4, H = 4, hd = 8;
  for (int64_t KV : {1, 2, 4}) {
    Attrs a = attention_attrs(H, KV, hd);
    std::vector<Input> in{f32({T, H * hd}, normal(T * H * hd, 10)),
                          f32({P, KV * hd}, normal(P * KV * hd, 11)),
                          f32({P, KV * hd}, normal(P * KV * hd, 12))};
    auto got = faulty("gqa_map", "attention", a, in);
    auto want = plain("attention", a, in);
    if (KV == 1) {
      EXPECT_EQ(got, want) << "one KV head: no wrong head to read";
    } else {
      EXPECT_GT(max_abs_diff(got, want), 1e-2) << "KV=" << KV;
    }
  }
}

TEST_F(Faulty, ExpOverflowGivesNanForLargeScoresAndGates) {
  const int64_t T = 1, P = 3, H = 1, hd = 4;
  Attrs a = attention_attrs(H, H, hd);  // scale 1/2
  // Scaled score 4 * 2.5 * 2.5 / 2 = 12.5 > ln(65504) ~ 11.09: exp overflows in f16.
  std::vector<Input> large{f32({T, hd}, std::vector<float>(hd, 2.5f)),
                           f32({P, hd}, std::vector<float>(P * hd, 2.5f)),
                           f32({P, hd}, normal(P * hd, 13))};
  EXPECT_TRUE(all_finite(plain("attention", a, large)));
  EXPECT_TRUE(any_nan(faulty("exp_overflow", "attention", a, large)));
  std::vector<Input> small{f32({T, hd}, normal(hd, 14)), f32({P, hd}, normal(P * hd, 15)),
                           f32({P, hd}, normal(P * hd, 16))};
  // Small scores only pay the half-precision rounding of exp.
  EXPECT_LT(
      max_abs_diff(faulty("exp_overflow", "attention", a, small), plain("attention", a, small)),
      2e-3);

  std::vector<Input> gates{f32({1, 4}, {-3, 0.5f, 5, 12}), f32({1, 4}, {1, 1, 1, 1})};
  auto got = faulty("exp_overflow", "swiglu", {}, gates);
  auto want = plain("swiglu", {}, gates);
  EXPECT_TRUE(all_finite(want));
  EXPECT_TRUE(std::isnan(got[3])) << "gate 12: exp overflows half precision, Inf / Inf";
  EXPECT_LT(max_abs_diff({got.begin(), got.begin() + 3}, {want.begin(), want.begin() + 3}), 5e-3);
}

TEST_F(Faulty, SiteFilterLeavesOtherSitesExactlyAlone) {
  auto be = open_backend("faulty:cpu?fault=matmul_tail&site=blk\\.2\\.");
  std::vector<Input> in{f32({2, 12}, normal(24, 17)), f32({3, 12}, normal(36, 18))};
  auto want = plain("matmul", {}, in);
  EXPECT_EQ(run_op(*be, "matmul", {}, in, "blk.3.attn_q")[0], want);
  EXPECT_EQ(run_op(*be, "matmul", {}, in, "blk.12.attn_q")[0], want);
  EXPECT_GT(max_abs_diff(run_op(*be, "matmul", {}, in, "blk.2.attn_q")[0], want), 1e-2);
  // Ops the fault does not touch pass through at matching sites too.
  std::vector<Input> sum{f32({1, 3}, {1, 2, 3}), f32({1, 3}, {4, 5, 6})};
  EXPECT_EQ(run_op(*be, "add", {}, sum, "blk.2.attn_residual")[0], (std::vector<float>{5, 7, 9}));
}

TEST_F(Faulty, TheFamiliesOpsFaultsDoWhatTheySay) {
  const int64_t T = 3, N = 8;
  std::vector<Input> x{f32({T, N}, normal(T * N, 21, 2.0f))};
  // gelu_form: the other approximation, exactly.
  for (int approx : {0, 1})
    EXPECT_EQ(faulty("gelu_form", "gelu", {{"approx", double(approx)}}, x),
              plain("gelu", {{"approx", double(1 - approx)}}, x));
  // bias_dropped and softcap_missing (on the softcap op): the input comes back.
  std::vector<Input> xb{x[0], f32({N}, normal(N, 22))};
  EXPECT_EQ(faulty("bias_dropped", "bias", {}, xb), x[0].values);
  EXPECT_EQ(faulty("softcap_missing", "softcap", {{"cap", 1.5}}, x), x[0].values);
  // layernorm_mean: x / sigma * w, so a row shifted by a constant is no longer normalized the
  // same; the mean-free row itself is unchanged.
  std::vector<float> centred = normal(N, 23), shifted = centred;
  double mean = 0;
  for (float v : centred) mean += v;
  for (float& v : centred) v -= float(mean / N);
  for (size_t i = 0; i < shifted.size(); ++i) shifted[i] = centred[i] + 5;
  std::vector<Input> w{f32({1, N}, centred), f32({N}, normal(N, 24))};
  EXPECT_LT(max_abs_diff(faulty("layernorm_mean", "layernorm", {{"eps", 1e-5}}, w),
                         plain("layernorm", {{"eps", 1e-5}}, w)),
            1e-4);
  w[0].values = shifted;
  EXPECT_GT(max_abs_diff(faulty("layernorm_mean", "layernorm", {{"eps", 1e-5}}, w),
                         plain("layernorm", {{"eps", 1e-5}}, w)),
            1.0);
  // moe_norm flips the renormalization; router_axis with one token picks the first k experts.
  std::vector<Input> logits{f32({1, 4}, {0.1f, 2.0f, -1.0f, 3.0f})};
  for (int norm : {0, 1})
    EXPECT_EQ(faulty("moe_norm", "moe_route", {{"k", 2}, {"norm", double(norm)}}, logits),
              plain("moe_route", {{"k", 2}, {"norm", double(1 - norm)}}, logits));
  EXPECT_EQ(faulty("router_axis", "moe_route", {{"k", 2}, {"norm", 1}}, logits),
            (std::vector<float>{0.5f, 0.5f, 0, 0}));
}

TEST_F(Faulty, RopeFullHeadAndWindowOffByOneChangeOnlyWhatTheyShould) {
  const int64_t T = 2, H = 2, hd = 8;
  auto rope = [&](int64_t rd) {
    return Attrs{{"n_heads", double(H)},
                 {"head_dim", double(hd)},
                 {"rope_dim", double(rd)},
                 {"base", 10000.0},
                 {"pairing", 1.0}};
  };
  std::vector<Input> in{f32({T, H * hd}, normal(T * H * hd, 25)), i32({T}, {7, 8})};
  EXPECT_EQ(faulty("rope_full_head", "rope", rope(4), in), plain("rope", rope(hd), in));
  EXPECT_EQ(faulty("rope_full_head", "rope", rope(hd), in), plain("rope", rope(hd), in));
  const int64_t P = 10;
  auto attn = [&](double window) {
    Attrs a{{"n_heads", double(H)}, {"n_kv_heads", 1.0}, {"head_dim", double(hd)}, {"scale", 0.35}};
    if (window > 0) a.set("window", window);
    return a;
  };
  std::vector<Input> qkv{f32({1, H * hd}, normal(H * hd, 26)), f32({P, hd}, normal(P * hd, 27)),
                         f32({P, hd}, normal(P * hd, 28))};
  EXPECT_EQ(faulty("window_off_by_one", "attention", attn(4), qkv),
            plain("attention", attn(5), qkv));
  EXPECT_EQ(faulty("window_off_by_one", "attention", attn(0), qkv),
            plain("attention", attn(0), qkv));
}

TEST_F(Faulty, InfoNamesInnerFaultAndSites) {
  auto be = open_backend("faulty:cpu?fault=rope_pairing&site=blk\\.2\\.rope_q");
  EXPECT_EQ(be->info().name, "faulty");
  EXPECT_EQ(be->info().uri, "faulty:cpu?fault=rope_pairing&site=blk\\.2\\.rope_q");
  EXPECT_EQ(be->info().device, "cpu with fault rope_pairing at sites blk\\.2\\.rope_q");
  EXPECT_EQ(open_backend("faulty:ref?fault=gqa_map")->info().device,
            "ref with fault gqa_map at every site");
  EXPECT_EQ(known_faults().size(), 23u);
}

TEST_F(Faulty, BadUrisSayWhatIsWrong) {
  auto err = [](const std::string& uri) { return error_of([&] { open_backend(uri); }); };
  std::string unknown = err("faulty:cpu?fault=bitflip");
  EXPECT_TRUE(contains(unknown, "unknown fault 'bitflip'"));
  for (const std::string& f : known_faults()) EXPECT_TRUE(contains(unknown, f));
  EXPECT_TRUE(contains(err("faulty:cpu"), "missing fault=NAME"));
  EXPECT_TRUE(contains(err("faulty:cpu?fault=gqa_map&threads=2"), "unknown parameter 'threads'"));
  EXPECT_TRUE(
      contains(err("faulty:nosuch?fault=gqa_map"), "inner backend: unknown backend 'nosuch'"));
  EXPECT_TRUE(contains(err("faulty?fault=gqa_map"), "name the backend to wrap"));
  EXPECT_TRUE(
      contains(err("faulty:cpu?fault=gqa_map&site=blk.(2"), "not a valid regular expression"));
}

// Every fault on stories260K, 32 positions of greedy decoding from two prompts, against
// plain cpu. Whether a fault flips a token within 32 positions is a property of this model
// and prompt (its attention scores stay far from f16's and exp's range; its activations make
// eps negligible), so only flips decided by a wide logit margin are asserted; the rest is
// printed. Margins seen: rope_pairing and gqa_map flip with >= 0.9 to spare; on "Lily"
// matmul_tail and kv_offset flip early by >= 0.45 (from "Once upon a time" matmul_tail flips
// only at position 28, by 0.008, and kv_offset not at all).
TEST_F(Faulty, StoriesGreedyTokensShowStructuralFaults) {
  ModelFile model = load_model(testing::shared_path("models/stories260K/stories260K.gguf"));
  Tokenizer tokenizer = load_tokenizer("", model.gguf.get(), model.config.vocab_size);
  struct Run {
    std::vector<int> tokens;
    std::vector<float> logits;
  };
  for (std::string text : {"Once upon a time", "Lily"}) {
    std::vector<int> prompt = tokenizer.encode(text, true);
    auto greedy = [&](const std::string& uri) {
      Session session(model, Placement(uri));
      GenerateOptions o;
      o.steps = 32;
      o.keep_logits = true;
      GenerateResult r = generate(session, prompt, o);
      return Run{r.token_ids, r.logits};
    };
    Run want = greedy("cpu");
    for (const std::string& fault : known_faults()) {
      Run got = greedy("faulty:cpu?fault=" + fault);
      ASSERT_EQ(got.tokens.size(), want.tokens.size());
      size_t first = 0;
      while (first < got.tokens.size() && got.tokens[first] == want.tokens[first]) ++first;
      bool changed = first < got.tokens.size();
      std::cout << "[ stories  ] '" << text << "' " << fault << ": "
                << (changed ? "greedy tokens change at position " + std::to_string(first)
                            : std::string("greedy tokens unchanged"))
                << ", logits move by up to " << max_abs_diff(got.logits, want.logits) << "\n";
      bool structural = fault == "rope_pairing" || fault == "gqa_map";
      bool on_lily = fault == "matmul_tail" || fault == "kv_offset";
      if (structural || (on_lily && text == "Lily")) {
        EXPECT_TRUE(changed) << "'" << text << "' " << fault;
      }
    }
  }
}

}  // namespace
}  // namespace tapml

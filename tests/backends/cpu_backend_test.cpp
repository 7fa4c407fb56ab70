// The cpu backend against ref: every op on random inputs at ordinary and awkward sizes,
// f16/bf16 weights, threading on and off, and the URI's threads parameter.
#include "backends/cpu/cpu_backend.h"

#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend/host_call.h"
#include "backends/cpu/kernels.h"
#include "backends/ref/ref_backend.h"
#include "core/error.h"
#include "support/call_program.h"

namespace tapml {
namespace {

// A host-side tensor to feed a backend.
struct Input {
  DType dtype = DType::F32;
  Shape shape;
  std::vector<std::byte> bytes;
};

Input from_f32(Shape shape, const std::vector<float>& v, DType dtype = DType::F32) {
  Input in{dtype, std::move(shape), {}};
  in.bytes.resize(v.size() * dtype_size(dtype));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == DType::F32) {
      std::memcpy(in.bytes.data() + 4 * i, &v[i], 4);
    } else {
      uint16_t h = dtype == DType::F16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
      std::memcpy(in.bytes.data() + 2 * i, &h, 2);
    }
  }
  return in;
}

Input from_i32(Shape shape, const std::vector<int32_t>& v) {
  Input in{DType::I32, std::move(shape), {}};
  in.bytes.resize(v.size() * 4);
  std::memcpy(in.bytes.data(), v.data(), in.bytes.size());
  return in;
}

class Rng {
 public:
  explicit Rng(uint32_t seed) : gen_(seed) {}
  std::vector<float> normal(int64_t n, float stddev = 1.0f) {
    std::normal_distribution<float> dist(0.0f, stddev);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(gen_);
    return v;
  }
  std::vector<int32_t> ints(int64_t n, int32_t lo, int32_t hi) {
    std::uniform_int_distribution<int32_t> dist(lo, hi);
    std::vector<int32_t> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(gen_);
    return v;
  }

 private:
  std::mt19937 gen_;
};

// Runs one op on `be` and returns every output as f32 values. In-place outputs (kv_store)
// come back as the whole updated input. run_host_call places every tensor at an offset
// inside its buffer (between guard bytes), which catches kernels that ignore
// DeviceTensor::offset, and checks that nothing outside the outputs was written.
std::vector<std::vector<float>> run_op(Backend& be, const std::string& op, const Attrs& attrs,
                                       const std::vector<Input>& inputs) {
  std::vector<Tensor> tensors;
  for (const Input& in : inputs) {
    Tensor t(in.dtype, in.shape);
    std::memcpy(t.mutable_bytes(), in.bytes.data(), in.bytes.size());
    tensors.push_back(std::move(t));
  }
  HostCallResult r = run_host_call(be, parse_op(op), attrs, tensors, "test");
  std::vector<std::vector<float>> result;
  for (size_t i = 0; i < r.outputs.size(); ++i) {
    EXPECT_TRUE(r.guards_intact[i]) << op << " wrote outside output " << i;
    result.push_back(r.outputs[i].to_f32());
  }
  return result;
}

// max |got - want| must be within rel_tol of the output's scale (its largest magnitude).
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel_tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0, err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << what << ": element " << i << " is " << got[i];
    scale = std::max(scale, std::fabs(double(want[i])));
    double e = std::fabs(double(got[i]) - double(want[i]));
    if (e > err) err = e, worst = i;
  }
  EXPECT_LE(err, rel_tol * std::max(scale, 1e-30))
      << what << ": worst element " << worst << " got " << got[worst] << " want " << want[worst]
      << " (output scale " << scale << ")";
}

class CpuVsRef : public ::testing::Test {
 protected:
  void compare(const std::string& op, const Attrs& attrs, const std::vector<Input>& inputs,
               const std::string& what, double rel_tol = 1e-5) {
    auto want = run_op(*ref_, op, attrs, inputs);
    auto got = run_op(*cpu_, op, attrs, inputs);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) expect_close(got[i], want[i], rel_tol, op + " " + what);
  }

  std::unique_ptr<Backend> cpu_ = make_cpu_backend(BackendUri::parse("cpu?threads=3"));
  std::unique_ptr<Backend> ref_ = make_ref_backend(BackendUri::parse("ref"));
  Rng rng_{1234};
};

const DType kWeightTypes[] = {DType::F32, DType::F16, DType::BF16};

std::string dims(std::initializer_list<std::pair<const char*, int64_t>> items) {
  std::string s;
  for (auto& [k, v] : items) s += std::string(s.empty() ? "" : " ") + k + "=" + std::to_string(v);
  return s;
}

TEST_F(CpuVsRef, Matmul) {
  for (DType wt : kWeightTypes)
    for (int64_t T : {1, 2, 3, 4, 5, 7, 13})
      for (int64_t K : {1, 7, 16, 67, 256})
        for (int64_t N : {1, 5, 33}) {
          auto x = rng_.normal(T * K), w = rng_.normal(N * K);
          compare("matmul", {}, {from_f32({T, K}, x), from_f32({N, K}, w, wt)},
                  std::string(dtype_name(wt)) + " " + dims({{"T", T}, {"K", K}, {"N", N}}));
        }
}

TEST_F(CpuVsRef, MatmulLargeEnoughToThread) {
  // Several weight chunks per thread (prefill path), ranges not aligned to chunks, K with a
  // remainder after whole vectors; a K long enough to be cut into blocks (partial dot
  // products added up), with a last row tile and a last column of their own.
  for (DType wt : kWeightTypes)
    for (auto [T, K, N] : {std::tuple<int64_t, int64_t, int64_t>{1, 768, 301},
                           {64, 200, 150},
                           {9, 1030, 70},
                           {6, 24, 2000},
                           {13, 3100, 9},
                           // Many rows and at least 384 output rows per thread (x
                           // transposed, outer-product tiles): a last token vector of its
                           // own (33), two blocks of tokens (200), K in three blocks
                           // (2100), a last tile of fewer weight rows (1157, 1155).
                           {33, 67, 1160},
                           {200, 130, 1155},
                           {40, 2100, 1157}}) {
      auto x = rng_.normal(T * K), w = rng_.normal(N * K, 0.05f);
      compare("matmul", {}, {from_f32({T, K}, x), from_f32({N, K}, w, wt)},
              std::string(dtype_name(wt)) + " " + dims({{"T", T}, {"K", K}, {"N", N}}));
    }
}

TEST_F(CpuVsRef, Embedding) {
  for (DType wt : kWeightTypes)
    for (int64_t D : {1, 7, 64, 100})
      for (int64_t T : {1, 7, 300}) {
        const int64_t V = 50;
        compare("embedding", {},
                {from_f32({V, D}, rng_.normal(V * D), wt), from_i32({T}, rng_.ints(T, 0, V - 1))},
                std::string(dtype_name(wt)) + " " + dims({{"T", T}, {"D", D}}), 0);
      }
}

TEST_F(CpuVsRef, EmbeddingRejectsBadIds) {
  for (int32_t bad : {-1, 10, 1 << 30}) {
    auto run = [&] {
      run_op(*cpu_, "embedding", {},
             {from_f32({10, 4}, rng_.normal(40)), from_i32({3}, {0, bad, 2})});
    };
    EXPECT_THROW(run(), Error) << bad;
  }
}

TEST_F(CpuVsRef, Rmsnorm) {
  for (DType wt : kWeightTypes)
    for (int64_t D : {1, 7, 64, 257, 4096})
      for (int64_t T : {1, 7, 40})
        for (double eps : {1e-5, 1e-6}) {
          Attrs attrs{{"eps", eps}};
          compare("rmsnorm", attrs,
                  {from_f32({T, D}, rng_.normal(T * D, 3.0f)), from_f32({D}, rng_.normal(D), wt)},
                  std::string(dtype_name(wt)) + " " + dims({{"T", T}, {"D", D}}));
        }
}

TEST_F(CpuVsRef, Rope) {
  struct Case {
    int64_t H, hd, rd;
  };
  for (int pairing : {0, 1})
    for (Case c :
         {Case{4, 16, 16}, Case{8, 64, 64}, Case{3, 20, 8}, Case{2, 128, 64}, Case{1, 2, 2}})
      for (int64_t T : {1, 7, 200}) {
        Attrs attrs{{"n_heads", double(c.H)},
                    {"head_dim", double(c.hd)},
                    {"rope_dim", double(c.rd)},
                    {"base", 10000.0},
                    {"pairing", double(pairing)}};
        compare("rope", attrs,
                {from_f32({T, c.H * c.hd}, rng_.normal(T * c.H * c.hd)),
                 from_i32({T}, rng_.ints(T, 0, 5000))},
                dims({{"pairing", pairing}, {"H", c.H}, {"hd", c.hd}, {"rd", c.rd}, {"T", T}}),
                1e-6);
      }
}

// One-row calls back to back at one position, as a decode step makes them, with what the
// backend may keep from the call before changing in between: the base, the rotated
// dimensions, the frequency factors (values, in a buffer of the same size), the position.
TEST_F(CpuVsRef, OneRowRopesInARowWithOtherParameters) {
  const int64_t H = 2, hd = 32;
  struct Step {
    double base;
    int64_t rd;
    float factor;  // 0: no factors input
    int32_t pos;
  };
  for (Step st : {Step{10000, 32, 0, 9}, Step{10000, 32, 0, 9}, Step{500000, 32, 0, 9},
                  Step{500000, 16, 0, 9}, Step{500000, 16, 2, 9}, Step{500000, 16, 3, 9},
                  Step{500000, 16, 3, 10}, Step{10000, 32, 0, 10}, Step{10000, 32, 0, 9}}) {
    Attrs attrs{{"n_heads", double(H)},
                {"head_dim", double(hd)},
                {"rope_dim", double(st.rd)},
                {"base", st.base},
                {"pairing", 0.0}};
    std::vector<Input> in = {from_f32({1, H * hd}, rng_.normal(H * hd)), from_i32({1}, {st.pos})};
    if (st.factor > 0)
      in.push_back(from_f32({st.rd / 2}, std::vector<float>(size_t(st.rd / 2), st.factor)));
    compare("rope", attrs, in,
            dims({{"base", int64_t(st.base)}, {"rd", st.rd}, {"pos", st.pos}}) + " factor " +
                std::to_string(st.factor),
            1e-6);
  }
}

TEST_F(CpuVsRef, KvStore) {
  const int64_t S = 16, C = 12;
  for (int64_t T : {1, 3, 16})
    for (int32_t pos : {0, 5, int32_t(S - T)}) {
      if (pos + T > S) continue;
      compare("kv_store", {},
              {from_f32({S, C}, rng_.normal(S * C)), from_f32({S, C}, rng_.normal(S * C)),
               from_f32({T, C}, rng_.normal(T * C)), from_f32({T, C}, rng_.normal(T * C)),
               from_i32({1}, {pos})},
              dims({{"T", T}, {"pos", pos}}), 0);
    }
}

TEST_F(CpuVsRef, KvStoreRejectsBadPositions) {
  const int64_t S = 8, C = 4, T = 3;
  for (int32_t pos : {-1, 6, 100}) {
    auto run = [&] {
      run_op(*cpu_, "kv_store", {},
             {from_f32({S, C}, rng_.normal(S * C)), from_f32({S, C}, rng_.normal(S * C)),
              from_f32({T, C}, rng_.normal(T * C)), from_f32({T, C}, rng_.normal(T * C)),
              from_i32({1}, {pos})});
    };
    EXPECT_THROW(run(), Error) << pos;
  }
}

// One query row per task below 16 rows; from 16 the prefill's tiles of 8 rows over the keys
// transposed: rows that end a tile early (T % 8), head dims of a vector and a scalar tail,
// long cached prefixes, f32 and f16 caches.
TEST_F(CpuVsRef, Attention) {
  struct Case {
    int64_t H, KV, hd;
  };
  for (Case c : {Case{8, 4, 16}, Case{8, 2, 20}, Case{12, 4, 64}, Case{4, 1, 3}, Case{2, 2, 128}})
    for (int64_t T : {1, 7, 16, 23, 40})
      for (int64_t extra : {0, 9, 100})
        for (DType kv : {DType::F32, DType::F16}) {
          const int64_t P = T + extra;
          const Attrs attrs = testing::attention_attrs(c.H, c.KV, c.hd);
          compare("attention", attrs,
                  {from_f32({T, c.H * c.hd}, rng_.normal(T * c.H * c.hd)),
                   from_f32({P, c.KV * c.hd}, rng_.normal(P * c.KV * c.hd), kv),
                   from_f32({P, c.KV * c.hd}, rng_.normal(P * c.KV * c.hd), kv)},
                  dims({{"H", c.H}, {"KV", c.KV}, {"hd", c.hd}, {"T", T}, {"P", P}}) + " " +
                      std::string(dtype_name(kv)));
        }
}

// A value row a query must not see (a later position; before its window) stays out of its
// output even when it holds inf, as an f16 cache stores anything past 65504: a prefill's
// tiles share passes over keys between rows, and 0 * inf would be NaN.
TEST_F(CpuVsRef, AttentionRowsNeverTouchValuesTheyDoNotSee) {
  const int64_t H = 2, KV = 1, hd = 20, T = 24, P = 24;
  for (DType kv : {DType::F32, DType::F16})
    for (int64_t window : {0, 2}) {
      Attrs attrs = testing::attention_attrs(H, KV, hd);
      if (window) attrs.set("window", double(window));
      const int64_t bad = window ? 8 : P - 1;  // the value row holding inf
      std::vector<float> v = rng_.normal(P * KV * hd);
      for (int64_t i = 0; i < hd; ++i) v[size_t(bad * hd + i)] = INFINITY;
      const std::vector<Input> in = {from_f32({T, H * hd}, rng_.normal(T * H * hd)),
                                     from_f32({P, KV * hd}, rng_.normal(P * KV * hd), kv),
                                     from_f32({P, KV * hd}, v, kv)};
      const std::vector<float> got = run_op(*cpu_, "attention", attrs, in)[0];
      const std::vector<float> want = run_op(*ref_, "attention", attrs, in)[0];
      const std::string what =
          "window " + std::to_string(window) + " " + std::string(dtype_name(kv));
      for (int64_t t = 0; t < T; ++t) {
        // Row t sees keys max(0, t - window + 1) .. t.
        const bool sees = bad <= t && (window == 0 || t - bad < window);
        for (int64_t i = 0; i < H * hd; ++i) {
          const float g = got[size_t(t * H * hd + i)], w = want[size_t(t * H * hd + i)];
          if (sees) {
            EXPECT_FALSE(std::isfinite(g)) << what << " row " << t;
          } else {
            ASSERT_TRUE(std::isfinite(g)) << what << " row " << t << " element " << i;
            EXPECT_NEAR(g, w, 1e-5 * (1 + std::fabs(w))) << what << " row " << t;
          }
        }
      }
    }
}

TEST_F(CpuVsRef, AttentionWithPeakedScores) {
  // Large scores make the softmax nearly one-hot: checks the max subtraction.
  const int64_t H = 4, KV = 2, hd = 32, T = 3, P = 50;
  Attrs attrs{
      {"n_heads", double(H)}, {"n_kv_heads", double(KV)}, {"head_dim", double(hd)}, {"scale", 1.0}};
  compare("attention", attrs,
          {from_f32({T, H * hd}, rng_.normal(T * H * hd, 3.0f)),
           from_f32({P, KV * hd}, rng_.normal(P * KV * hd, 3.0f)),
           from_f32({P, KV * hd}, rng_.normal(P * KV * hd))},
          "peaked", 1e-4);
}

TEST_F(CpuVsRef, Swiglu) {
  for (auto [T, F] : {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {7, 64}, {3, 1000}, {9, 8000}}) {
    auto g = rng_.normal(T * F, 4.0f);
    if (T * F > 2) g[0] = -120.0f, g[1] = 120.0f;  // exp overflow territory
    compare("swiglu", {}, {from_f32({T, F}, g), from_f32({T, F}, rng_.normal(T * F))},
            dims({{"T", T}, {"F", F}}));
  }
}

TEST_F(CpuVsRef, Add) {
  for (auto [T, D] : {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {7, 64}, {3, 1000}, {17, 8000}})
    compare("add", {}, {from_f32({T, D}, rng_.normal(T * D)), from_f32({T, D}, rng_.normal(T * D))},
            dims({{"T", T}, {"D", D}}), 1e-7);
}

TEST_F(CpuVsRef, Gelu) {
  for (int approx : {0, 1})
    for (auto [T, F] : {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {7, 64}, {3, 1000}, {9, 8000}}) {
      const Attrs attrs{{"approx", double(approx)}};
      const std::string what =
          "approx=" + std::to_string(approx) + " " + dims({{"T", T}, {"F", F}});
      auto x = rng_.normal(T * F, 3.0f);
      if (T * F > 2) x[0] = -40.0f, x[1] = 40.0f;  // erf, tanh and exp saturate
      compare("gelu", attrs, {from_f32({T, F}, x)}, what);
      // Every x <= -4, so every output is tiny: formed as 1 + erf or 1 + tanh it is lost.
      for (float& v : x) v = -4.0f - 4.0f * std::fabs(v);
      compare("gelu", attrs, {from_f32({T, F}, x)}, what + " negative tail");
    }
}

TEST_F(CpuVsRef, LayerNorm) {
  for (int64_t N : {1, 7, 64, 257, 4096})
    for (int64_t T : {1, 7, 40})
      for (float offset : {0.0f, 1000.0f}) {
        auto x = rng_.normal(T * N, 3.0f);
        for (float& v : x) v += offset;  // a mean far above the spread: no E[x^2] - E[x]^2
        const std::string what = dims({{"T", T}, {"N", N}, {"offset", int64_t(offset)}});
        // N = 1: every row is its own mean, the output 0 (offset 0 here, so exactly).
        compare("layernorm", {{"eps", 1e-5}}, {from_f32({T, N}, x), from_f32({N}, rng_.normal(N))},
                what, offset > 0 ? 1e-4 : 1e-5);
      }
}

TEST_F(CpuVsRef, BiasMulScale) {
  for (auto [T, N] : {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {7, 64}, {3, 1000}, {17, 8000}}) {
    const std::string what = dims({{"T", T}, {"N", N}});
    compare("bias", {}, {from_f32({T, N}, rng_.normal(T * N)), from_f32({N}, rng_.normal(N))}, what,
            1e-7);
    compare("mul", {}, {from_f32({T, N}, rng_.normal(T * N)), from_f32({T, N}, rng_.normal(T * N))},
            what, 1e-7);
    for (double s : {0.088388347648318, -3.0, 0.0})
      compare("scale", {{"s", s}}, {from_f32({T, N}, rng_.normal(T * N, 1e3f))},
              what + " s=" + std::to_string(s), 2e-7);
  }
}

TEST_F(CpuVsRef, Softcap) {
  for (auto [T, N] : {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {7, 64}, {3, 1000}, {9, 8000}})
    for (double cap : {30.0, 50.0, 0.5}) {
      auto x = rng_.normal(T * N, 40.0f);
      if (T * N > 2) x[0] = 1e30f, x[1] = -3e38f;  // saturated far past the cap
      compare("softcap", {{"cap", cap}}, {from_f32({T, N}, x)},
              dims({{"T", T}, {"N", N}}) + " cap=" + std::to_string(cap));
    }
}

TEST_F(CpuVsRef, SigmoidGate) {
  for (auto [T, N] : {std::pair<int64_t, int64_t>{1, 1}, {2, 7}, {7, 64}, {3, 1000}, {9, 8000}}) {
    auto g = rng_.normal(T, 5.0f);
    if (T > 1) g[0] = -200.0f, g[1] = 200.0f;  // exp overflows either way round
    compare("sigmoid_gate", {}, {from_f32({T, N}, rng_.normal(T * N)), from_f32({T, 1}, g)},
            dims({{"T", T}, {"N", N}}));
  }
}

TEST_F(CpuVsRef, MoeRoute) {
  for (auto [E, k] :
       {std::pair<int64_t, int64_t>{8, 2}, {60, 4}, {64, 6}, {3, 3}, {1, 1}, {128, 8}})
    for (int64_t T : {1, 7, 300})
      for (int norm : {0, 1}) {
        auto l = rng_.normal(T * E, 2.0f);
        // Ties: a third of the rows on a grid of 0.5.
        for (int64_t t = 0; t < T; t += 3)
          for (int64_t e = 0; e < E; ++e)
            l[size_t(t * E + e)] = std::round(l[size_t(t * E + e)] * 2) / 2;
        compare("moe_route", {{"k", double(k)}, {"norm", double(norm)}}, {from_f32({T, E}, l)},
                dims({{"E", E}, {"k", k}, {"T", T}, {"norm", norm}}));
      }
}

// [T, E]: k experts per row at random, weights in (0, 1], zero elsewhere.
std::vector<float> sparse_route(int64_t T, int64_t E, int64_t k, std::mt19937& gen) {
  std::vector<float> r(size_t(T * E), 0.0f);
  std::uniform_real_distribution<float> w(0.05f, 1.0f);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int64_t> order(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) order[size_t(e)] = e;
    std::shuffle(order.begin(), order.end(), gen);
    for (int64_t i = 0; i < k; ++i) r[size_t(t * E + order[size_t(i)])] = w(gen);
  }
  return r;
}

TEST_F(CpuVsRef, MoeFfn) {
  struct Case {
    int64_t T, D, H, E, k;
  };
  std::mt19937 gen(7);
  for (DType wt : kWeightTypes)
    for (Case c : {Case{1, 64, 48, 8, 2}, Case{5, 67, 43, 4, 2}, Case{13, 128, 96, 8, 3},
                   Case{3, 16, 8, 3, 3}, Case{40, 72, 200, 6, 2}, Case{2, 1, 1, 2, 1},
                   Case{90, 1160, 600, 2, 1}}) {  // about 45 rows per expert: x transposed
      const float sd = 1.0f / std::sqrt(float(c.D)), sh = 1.0f / std::sqrt(float(c.H));
      compare("moe_ffn", {},
              {from_f32({c.T, c.D}, rng_.normal(c.T * c.D)),
               from_f32({c.T, c.E}, sparse_route(c.T, c.E, c.k, gen)),
               from_f32({c.E, c.H, c.D}, rng_.normal(c.E * c.H * c.D, sd), wt),
               from_f32({c.E, c.H, c.D}, rng_.normal(c.E * c.H * c.D, sd), wt),
               from_f32({c.E, c.D, c.H}, rng_.normal(c.E * c.D * c.H, sh), wt)},
              std::string(dtype_name(wt)) + " " +
                  dims({{"T", c.T}, {"D", c.D}, {"H", c.H}, {"E", c.E}, {"k", c.k}}),
              2e-5);
    }
}

TEST_F(CpuVsRef, AttentionWithWindowAndSoftcap) {
  struct Case {
    int64_t T, extra, window;
    double softcap;
  };
  for (Case c :
       {Case{1, 40, 16, 0}, Case{1, 40, 1, 0}, Case{7, 0, 3, 0}, Case{7, 30, 5, 0},
        Case{30, 0, 7, 0}, Case{5, 10, 100, 0}, Case{3, 20, 0, 50}, Case{6, 27, 10, 20},
        Case{1, 300, 64, 30}, Case{37, 50, 12, 0}, Case{20, 0, 0, 30}, Case{44, 100, 30, 20}}) {
    const int64_t H = 8, KV = 2, hd = 36, P = c.T + c.extra;
    Attrs attrs{{"n_heads", double(H)},
                {"n_kv_heads", double(KV)},
                {"head_dim", double(hd)},
                {"scale", 1.0 / 6}};
    if (c.window) attrs.set("window", double(c.window));
    if (c.softcap) attrs.set("softcap", c.softcap);
    // Scores with a spread of about 16: the cap bites.
    compare("attention", attrs,
            {from_f32({c.T, H * hd}, rng_.normal(c.T * H * hd, 2.0f)),
             from_f32({P, KV * hd}, rng_.normal(P * KV * hd, 2.0f)),
             from_f32({P, KV * hd}, rng_.normal(P * KV * hd))},
            dims({{"T", c.T}, {"P", P}, {"window", c.window}, {"softcap", int64_t(c.softcap)}}),
            1e-4);
  }
}

TEST_F(CpuVsRef, RopeWithFreqFactors) {
  for (int pairing : {0, 1})
    for (int64_t T : {1, 7, 200}) {
      const int64_t H = 4, hd = 64, rd = 48;
      Attrs attrs{{"n_heads", double(H)},
                  {"head_dim", double(hd)},
                  {"rope_dim", double(rd)},
                  {"base", 500000.0},
                  {"pairing", double(pairing)}};
      std::vector<float> factors(rd / 2);
      for (size_t i = 0; i < factors.size(); ++i) factors[i] = 1.0f + 7.0f * float(i) / 23.0f;
      compare("rope", attrs,
              {from_f32({T, H * hd}, rng_.normal(T * H * hd)), from_i32({T}, rng_.ints(T, 0, 5000)),
               from_f32({rd / 2}, factors)},
              dims({{"pairing", pairing}, {"T", T}}), 1e-6);
    }
}

// ref's gelu is the catalog's formula: checked against it written with std::erf and
// std::tanh in long double where it does not cancel, and deep in the negative tail (where
// it does) against forms that share nothing with ref's erfc: the asymptotic series of Phi
// and x * e^(2z) / (1 + e^(2z)). ref?acc=f32, the noise reference, must keep the tail too,
// or every calibrated tolerance there would be loose.
TEST(RefBackend, GeluIsTheCatalogsFormula) {
  using LD = long double;
  const LD sqrt_half = 0.707106781186547524400844362104849039L;
  const LD sqrt_2_over_pi = 0.797884560802865355879892119868763737L;
  const LD pi = 3.14159265358979323846264338327950288L;
  auto erf_form = [&](LD x) { return 0.5L * x * (1.0L + std::erf(x * sqrt_half)); };
  auto tanh_form = [&](LD x) {
    return 0.5L * x * (1.0L + std::tanh(sqrt_2_over_pi * (x + 0.044715L * x * x * x)));
  };
  auto erf_tail = [&](LD x) {  // x * Phi(x), Phi(x) = pdf(x) / -x * (1 - 1/x^2 + 3/x^4 ...)
    const LD r = 1.0L / (x * x);
    const LD series = 1.0L - r * (1.0L - 3.0L * r * (1.0L - 5.0L * r * (1.0L - 7.0L * r)));
    return -std::exp(-0.5L * x * x) / std::sqrt(2.0L * pi) * series;
  };
  auto tanh_tail = [&](LD x) {
    const LD e = std::exp(2.0L * sqrt_2_over_pi * (x + 0.044715L * x * x * x));
    return x * e / (1.0L + e);
  };
  struct Point {
    int approx;
    float x;
    LD want;
    double f32_tol;  // relative, for ref?acc=f32
  };
  std::vector<Point> points;
  for (float x : {-3.0f, -1.0f, -0.5f, -1e-3f, 0.0f, 1e-3f, 0.5f, 1.0f, 3.0f, 10.0f, 30.0f}) {
    points.push_back({0, x, erf_form(x), 1e-6});
    points.push_back({1, x, tanh_form(x), 1e-6});
  }
  for (float x : {-10.0f, -12.0f, -13.0f}) points.push_back({0, x, erf_tail(x), 1e-4});
  for (float x : {-6.0f, -8.0f, -10.0f}) points.push_back({1, x, tanh_tail(x), 1e-4});
  auto ref = make_ref_backend(BackendUri::parse("ref"));
  auto ref32 = make_ref_backend(BackendUri::parse("ref?acc=f32"));
  for (const Point& p : points) {
    const std::vector<Input> in = {from_f32({1, 1}, {p.x})};
    const double want = double(p.want);
    const std::string what = "approx=" + std::to_string(p.approx) + " x=" + std::to_string(p.x);
    const float got = run_op(*ref, "gelu", {{"approx", double(p.approx)}}, in)[0][0];
    EXPECT_NEAR(got, want, 1e-6 * std::fabs(want)) << "ref " << what;
    if (p.x <= -6) {
      // A normal f32, so that the point does check the tail.
      EXPECT_LT(want, -double(std::numeric_limits<float>::min())) << what;
      EXPECT_NE(got, 0.0f) << "ref " << what;
    }
    const float got32 = run_op(*ref32, "gelu", {{"approx", double(p.approx)}}, in)[0][0];
    EXPECT_NEAR(got32, want, p.f32_tol * std::fabs(want)) << "ref?acc=f32 " << what;
  }
}

TEST_F(CpuVsRef, ZeroRows) {
  compare("matmul", {}, {from_f32({0, 8}, {}), from_f32({4, 8}, rng_.normal(32))}, "T=0");
  compare("rmsnorm", {{"eps", 1e-5}}, {from_f32({0, 8}, {}), from_f32({8}, rng_.normal(8))}, "T=0");
  compare("add", {}, {from_f32({0, 8}, {}), from_f32({0, 8}, {})}, "T=0");
}

// f16 inf, -inf and NaN weights stay inf, -inf and NaN through embedding and matmul.
void expect_special_f16_survive(Backend& cpu, const std::string& what) {
  const int64_t D = 40;  // whole vectors and a tail
  std::vector<uint16_t> table(size_t(2 * D), f32_to_f16(0.5f));
  table[3] = 0x7C00, table[D - 1] = 0xFC00, table[17] = 0x7E00, table[D + 5] = 0x7C00;
  Input t{DType::F16, Shape{2, D}, std::vector<std::byte>(table.size() * 2)};
  std::memcpy(t.bytes.data(), table.data(), t.bytes.size());
  auto e = run_op(cpu, "embedding", {}, {t, from_i32({2}, {0, 1})})[0];
  EXPECT_TRUE(std::isinf(e[3]) && e[3] > 0) << what << " " << e[3];
  EXPECT_TRUE(std::isinf(e[D - 1]) && e[D - 1] < 0) << what << " " << e[D - 1];
  EXPECT_TRUE(std::isnan(e[17])) << what << " " << e[17];
  EXPECT_EQ(e[4], 0.5f) << what;
  auto m = run_op(cpu, "matmul", {}, {from_f32({1, D}, std::vector<float>(size_t(D), 1.0f)), t})[0];
  EXPECT_TRUE(std::isnan(m[0])) << what << " " << m[0];  // inf + -inf + NaN
  EXPECT_TRUE(std::isinf(m[1]) && m[1] > 0) << what << " " << m[1];
}

TEST_F(CpuVsRef, EveryCompiledSimdTarget) {
  // The kernels are compiled for several instruction sets; the machine running the tests
  // picks one. Pretend to be older CPUs in turn so every compiled variant gets checked.
  struct Restore {
    ~Restore() { hwy::SetSupportedTargetsForTest(0); }
  } restore;
  const int64_t supported = hwy::SupportedTargets();
  std::set<std::string> seen;
  for (int64_t rest = supported; rest != 0; rest &= rest - 1) {
    const int64_t target = rest & -rest;
    // This target and every worse one (on x86, worse targets have higher bits); the static
    // target is always compiled, so dispatch always finds one.
    hwy::SetSupportedTargetsForTest((supported & ~(target - 1)) | HWY_STATIC_TARGET);
    const std::string name = cpu::simd_target();
    if (!seen.insert(name).second) continue;
    cpu_ = make_cpu_backend(BackendUri::parse("cpu?threads=2"));
    for (DType wt : kWeightTypes)
      for (int64_t T : {1, 3, 7}) {
        const int64_t K = 67, N = 37;
        compare("matmul", {},
                {from_f32({T, K}, rng_.normal(T * K)), from_f32({N, K}, rng_.normal(N * K), wt)},
                name + " " + std::string(dtype_name(wt)) + " T=" + std::to_string(T));
        if (T == 7)  // many rows, x transposed, K in blocks, on every target
          compare("matmul", {},
                  {from_f32({33, 1100}, rng_.normal(33 * 1100)),
                   from_f32({770, 1100}, rng_.normal(770 * 1100), wt)},
                  name + " " + std::string(dtype_name(wt)) + " T=33 K=1100 N=770");
        if (T == 7)  // prefill rows over a K cut into blocks on every target
          compare("matmul", {},
                  {from_f32({T, 2500}, rng_.normal(T * 2500)),
                   from_f32({9, 2500}, rng_.normal(9 * 2500), wt)},
                  name + " " + std::string(dtype_name(wt)) + " T=7 K=2500");
        compare("rmsnorm", {{"eps", 1e-5}},
                {from_f32({T, 45}, rng_.normal(T * 45)), from_f32({45}, rng_.normal(45), wt)},
                name + " " + std::string(dtype_name(wt)));
        compare("embedding", {},
                {from_f32({9, 45}, rng_.normal(9 * 45), wt), from_i32({T}, rng_.ints(T, 0, 8))},
                name + " " + std::string(dtype_name(wt)), 0);
      }
    expect_special_f16_survive(*cpu_, name);
    Attrs attrs{{"n_heads", 4.0}, {"n_kv_heads", 2.0}, {"head_dim", 36.0}, {"scale", 0.2}};
    compare("attention", attrs,
            {from_f32({3, 144}, rng_.normal(3 * 144)), from_f32({20, 72}, rng_.normal(20 * 72)),
             from_f32({20, 72}, rng_.normal(20 * 72))},
            name);
    // 19 rows: the prefill's tiles, one of them short; f32 and f16 caches.
    for (DType kv : {DType::F32, DType::F16})
      compare(
          "attention", attrs,
          {from_f32({19, 144}, rng_.normal(19 * 144)), from_f32({25, 72}, rng_.normal(25 * 72), kv),
           from_f32({25, 72}, rng_.normal(25 * 72), kv)},
          name + " tiles " + std::string(dtype_name(kv)));
    compare("swiglu", {},
            {from_f32({3, 29}, rng_.normal(87, 4.0f)), from_f32({3, 29}, rng_.normal(87))}, name);
    compare("add", {}, {from_f32({3, 29}, rng_.normal(87)), from_f32({3, 29}, rng_.normal(87))},
            name, 1e-7);
    {
      auto x = rng_.normal(87, 3.0f);
      for (float& v : x) v += 1000.0f;
      compare("layernorm", {{"eps", 1e-5}}, {from_f32({3, 29}, x), from_f32({29}, rng_.normal(29))},
              name, 1e-4);
      compare("mul", {}, {from_f32({3, 29}, rng_.normal(87)), from_f32({3, 29}, rng_.normal(87))},
              name, 1e-7);
      compare("scale", {{"s", 0.7}}, {from_f32({3, 29}, rng_.normal(87))}, name, 2e-7);
      compare("softcap", {{"cap", 5.0}}, {from_f32({3, 29}, rng_.normal(87, 10.0f))}, name);
      Attrs windowed = attrs;
      windowed.set("window", 6);
      windowed.set("softcap", 2);
      compare("attention", windowed,
              {from_f32({3, 144}, rng_.normal(3 * 144)), from_f32({20, 72}, rng_.normal(20 * 72)),
               from_f32({20, 72}, rng_.normal(20 * 72))},
              name + " window, softcap");
    }
    for (int approx : {0, 1}) {
      // Without FMA the erfc's x^2 residual is 0; the negative tail shows what that costs.
      auto x = rng_.normal(87, 3.0f);
      compare("gelu", {{"approx", double(approx)}}, {from_f32({3, 29}, x)}, name);
      for (float& v : x) v = -4.0f - 4.0f * std::fabs(v);
      compare("gelu", {{"approx", double(approx)}}, {from_f32({3, 29}, x)}, name + " tail");
    }
  }
  EXPECT_GE(seen.size(), 1u);
  std::string names;
  for (auto& n : seen) names += " " + n;
  std::printf("checked SIMD targets:%s\n", names.c_str());
}

TEST(CpuBackend, OneThreadMatchesThree) {
  auto one = make_cpu_backend(BackendUri::parse("cpu?threads=1"));
  auto three = make_cpu_backend(BackendUri::parse("cpu?threads=3"));
  Rng rng(99);
  for (DType wt : kWeightTypes) {
    const int64_t T = 11, K = 300, N = 97;
    std::vector<Input> in = {from_f32({T, K}, rng.normal(T * K)),
                             from_f32({N, K}, rng.normal(N * K), wt)};
    expect_close(run_op(*three, "matmul", {}, in)[0], run_op(*one, "matmul", {}, in)[0], 1e-6,
                 "matmul");
    // Many rows, 400 output rows per thread at three threads: the outer-product kernel at
    // both counts, the same bits however split.
    const int64_t Tm = 70, Km = 1100, Nm = 1201;
    in = {from_f32({Tm, Km}, rng.normal(Tm * Km)), from_f32({Nm, Km}, rng.normal(Nm * Km), wt)};
    expect_close(run_op(*three, "matmul", {}, in)[0], run_op(*one, "matmul", {}, in)[0], 0,
                 "matmul, many rows");
  }
  const int64_t H = 8, KV = 2, hd = 64, T = 9, P = 120;
  Attrs attrs{{"n_heads", double(H)},
              {"n_kv_heads", double(KV)},
              {"head_dim", double(hd)},
              {"scale", 0.125}};
  std::vector<Input> in = {from_f32({T, H * hd}, rng.normal(T * H * hd)),
                           from_f32({P, KV * hd}, rng.normal(P * KV * hd)),
                           from_f32({P, KV * hd}, rng.normal(P * KV * hd))};
  expect_close(run_op(*three, "attention", attrs, in)[0], run_op(*one, "attention", attrs, in)[0],
               1e-6, "attention");
  // A prefill's tiles: each task computes alone, the same bits however split.
  const int64_t Tp = 45, Pp = 170;
  in = {from_f32({Tp, H * hd}, rng.normal(Tp * H * hd)),
        from_f32({Pp, KV * hd}, rng.normal(Pp * KV * hd)),
        from_f32({Pp, KV * hd}, rng.normal(Pp * KV * hd))};
  expect_close(run_op(*three, "attention", attrs, in)[0], run_op(*one, "attention", attrs, in)[0],
               0, "attention, prefill tiles");
  // (H=150: gate and up are 300 rows, too few per thread for the outer-product kernel at
  // one thread as at three, which would sum in another order.)
  std::vector<Input> moe = {from_f32({33, 96}, rng.normal(33 * 96)),
                            from_f32({33, 5}, rng.normal(33 * 5)),
                            from_f32({5, 150, 96}, rng.normal(5 * 150 * 96, 0.1f)),
                            from_f32({5, 150, 96}, rng.normal(5 * 150 * 96, 0.1f)),
                            from_f32({5, 96, 150}, rng.normal(5 * 96 * 150, 0.06f))};
  // Bit for bit: the experts' rows are added in expert order whatever the split.
  EXPECT_EQ(run_op(*three, "moe_ffn", {}, moe)[0], run_op(*one, "moe_ffn", {}, moe)[0]);
  std::vector<Input> norm = {from_f32({40, 4000}, rng.normal(160000)),
                             from_f32({4000}, rng.normal(4000))};
  EXPECT_EQ(run_op(*three, "layernorm", {{"eps", 1e-6}}, norm)[0],
            run_op(*one, "layernorm", {{"eps", 1e-6}}, norm)[0]);
  std::vector<Input> big = {from_f32({40, 4000}, rng.normal(160000)),
                            from_f32({4000}, rng.normal(4000))};
  expect_close(run_op(*three, "rmsnorm", {{"eps", 1e-6}}, big)[0],
               run_op(*one, "rmsnorm", {{"eps", 1e-6}}, big)[0], 1e-6, "rmsnorm");
}

TEST(CpuBackend, ThreadsParameter) {
  auto be = make_cpu_backend(BackendUri::parse("cpu?threads=2"));
  EXPECT_EQ(be->info().name, "cpu");
  EXPECT_NE(be->info().device.find("2 threads"), std::string::npos) << be->info().device;
  EXPECT_NO_THROW(make_cpu_backend(BackendUri::parse("cpu")));
  for (const char* bad : {"cpu?threads=0", "cpu?threads=-2", "cpu?threads=1025", "cpu?threads=two",
                          "cpu?threads=", "cpu?thread=2", "cpu:0"}) {
    try {
      make_cpu_backend(BackendUri::parse(bad));
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      std::string msg = e.what();
      EXPECT_NE(msg.find(bad), std::string::npos) << "message does not name the URI: " << msg;
    }
  }
}

TEST(CpuBackend, SupportsEveryCatalogOp) {
  auto be = make_cpu_backend(BackendUri::parse("cpu?threads=1"));
  OpCall call{Op::Matmul, {}, {}, {}, ""};
  call.inputs = {{1, 0, DType::F32, Shape{2, 8}}, {2, 0, DType::BF16, Shape{3, 8}}};
  call.outputs = {{3, 0, DType::F32, Shape{2, 3}}};
  EXPECT_TRUE(be->supports(call).ok) << be->supports(call).reason;
  call.op = Op::Add;  // the same tensors do not fit add
  EXPECT_FALSE(be->supports(call).ok);
}

}  // namespace
}  // namespace tapml

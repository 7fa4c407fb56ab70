// The vulkan backend against ref: every op at ordinary and awkward sizes (odd lengths, long
// rows, 2-byte-aligned f16 weights), f32/f16/bf16 weights, the golden stories260K tokens,
// device limits refused by supports(). Every test skips, saying why, where the build has no
// Vulkan or the machine no Vulkan device (install mesa-vulkan-drivers for lavapipe).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/host_call.h"
#include "backend/registry.h"
#include "backends/builtin.h"
#include "backends/ref/ref_backend.h"
#include "core/error.h"
#ifdef TAPML_WITH_VULKAN
#include "backends/vulkan/vulkan_backend.h"
#include "model/model_file.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/golden.h"
#include "support/shared.h"
#include "support/tensors.h"
#include "support/vulkan_device.h"
#include "tokenizer/load.h"
#endif

namespace tapml {
namespace {

#ifndef TAPML_WITH_VULKAN

TEST(Vulkan, Skipped) { GTEST_SKIP() << "built without Vulkan (TAPML_WITH_VULKAN is off)"; }

#else

std::unique_ptr<Backend>& device() { return testing::vulkan_device(); }

using testing::f32_tensor;
using testing::i32_tensor;
using testing::ints;
using testing::normal;

class VulkanVsRef : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_VULKAN_DEVICE(); }

  // Every output within rel_tol of the output's largest magnitude, guards intact.
  void compare(const std::string& op, const Attrs& attrs, const std::vector<Tensor>& in,
               const std::string& what, double rel_tol = 1e-5) {
    HostCallResult want = run_host_call(*ref_, parse_op(op), attrs, in, "test");
    HostCallResult got = run_host_call(*device(), parse_op(op), attrs, in, "test");
    ASSERT_EQ(got.outputs.size(), want.outputs.size());
    for (size_t o = 0; o < got.outputs.size(); ++o) {
      EXPECT_TRUE(got.guards_intact[o]) << op << " " << what << " wrote outside output " << o;
      std::vector<float> g = got.outputs[o].to_f32(), w = want.outputs[o].to_f32();
      ASSERT_EQ(g.size(), w.size());
      double scale = 0, err = 0;
      size_t worst = 0;
      for (size_t i = 0; i < w.size(); ++i) {
        ASSERT_TRUE(std::isfinite(g[i]))
            << op << " " << what << ": element " << i << " is " << g[i];
        scale = std::max(scale, std::fabs(double(w[i])));
        double e = std::fabs(double(g[i]) - w[i]);
        if (e > err) err = e, worst = i;
      }
      EXPECT_LE(err, rel_tol * std::max(scale, 1e-30))
          << op << " " << what << ": worst element " << worst << " got " << g[worst] << " want "
          << w[worst];
    }
  }

  std::unique_ptr<Backend> ref_ = make_ref_backend(BackendUri::parse("ref"));
  std::mt19937 gen_{4321};
};

const DType kWeightTypes[] = {DType::F32, DType::F16, DType::BF16};

std::string name(DType t, int64_t a, int64_t b, int64_t c = -1) {
  return std::string(dtype_name(t)) + " " + std::to_string(a) + "x" + std::to_string(b) +
         (c >= 0 ? "x" + std::to_string(c) : "");
}

TEST_F(VulkanVsRef, Matmul) {
  for (DType wt : kWeightTypes)
    for (int64_t T : {1, 3, 4, 5, 13})
      for (int64_t K : {1, 7, 67, 256, 4099})
        for (int64_t N : {1, 5, 33}) {
          compare("matmul", {},
                  {f32_tensor({T, K}, normal(gen_, T * K)),
                   f32_tensor({N, K}, normal(gen_, N * K), wt)},
                  name(wt, T, K, N), K > 1000 ? 2e-5 : 1e-5);
        }
}

TEST_F(VulkanVsRef, Embedding) {
  for (DType wt : kWeightTypes)
    for (int64_t D : {1, 7, 64})
      for (int64_t T : {1, 7, 300})
        compare(
            "embedding", {},
            {f32_tensor({50, D}, normal(gen_, 50 * D), wt), i32_tensor({T}, ints(gen_, T, 0, 49))},
            name(wt, T, D), 0);
}

TEST_F(VulkanVsRef, EmbeddingRejectsBadIds) {
  for (int32_t bad : {-1, 10}) {
    EXPECT_THROW(
        run_host_call(*device(), Op::Embedding, {},
                      {f32_tensor({10, 4}, normal(gen_, 40)), i32_tensor({3}, {0, bad, 2})}),
        Error)
        << bad;
  }
}

TEST_F(VulkanVsRef, Rmsnorm) {
  for (DType wt : kWeightTypes)
    for (int64_t D : {1, 7, 257, 4096, 100000})
      for (int64_t T : {1, 7})
        compare(
            "rmsnorm", {{"eps", 1e-5}},
            {f32_tensor({T, D}, normal(gen_, T * D, 3.0f)), f32_tensor({D}, normal(gen_, D), wt)},
            name(wt, T, D));
}

TEST_F(VulkanVsRef, Rope) {
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
                {f32_tensor({T, c.H * c.hd}, normal(gen_, T * c.H * c.hd)),
                 i32_tensor({T}, ints(gen_, T, 0, 5000))},
                "pairing " + std::to_string(pairing) + " " + name(DType::F32, c.H, c.hd, c.rd),
                2e-6);
      }
}

TEST_F(VulkanVsRef, KvStore) {
  const int64_t S = 16, C = 12;
  for (int64_t T : {1, 3, 16})
    for (int32_t pos : {0, 5, int32_t(S - T)}) {
      if (pos + T > S) continue;
      compare("kv_store", {},
              {f32_tensor({S, C}, normal(gen_, S * C)), f32_tensor({S, C}, normal(gen_, S * C)),
               f32_tensor({T, C}, normal(gen_, T * C)), f32_tensor({T, C}, normal(gen_, T * C)),
               i32_tensor({1}, {pos})},
              "T " + std::to_string(T) + " pos " + std::to_string(pos), 0);
    }
  EXPECT_THROW(
      run_host_call(*device(), Op::KvStore, {},
                    {f32_tensor({4, 2}, normal(gen_, 8)), f32_tensor({4, 2}, normal(gen_, 8)),
                     f32_tensor({2, 2}, normal(gen_, 4)), f32_tensor({2, 2}, normal(gen_, 4)),
                     i32_tensor({1}, {3})}),
      Error);
}

TEST_F(VulkanVsRef, Attention) {
  struct Case {
    int64_t H, KV, hd;
  };
  for (Case c : {Case{8, 4, 16}, Case{8, 2, 20}, Case{8, 8, 64}, Case{4, 1, 3}, Case{2, 2, 128},
                 Case{2, 1, 200}})
    for (int64_t T : {1, 7})
      for (int64_t extra : {0, 5, 33, 1500}) {
        const int64_t P = T + extra;
        Attrs attrs{{"n_heads", double(c.H)},
                    {"n_kv_heads", double(c.KV)},
                    {"head_dim", double(c.hd)},
                    {"scale", 1.0 / std::sqrt(double(c.hd))}};
        compare("attention", attrs,
                {f32_tensor({T, c.H * c.hd}, normal(gen_, T * c.H * c.hd)),
                 f32_tensor({P, c.KV * c.hd}, normal(gen_, P * c.KV * c.hd)),
                 f32_tensor({P, c.KV * c.hd}, normal(gen_, P * c.KV * c.hd))},
                "H " + std::to_string(c.H) + " KV " + std::to_string(c.KV) + " hd " +
                    std::to_string(c.hd) + " T " + std::to_string(T) + " P " + std::to_string(P),
                2e-5);
      }
}

TEST_F(VulkanVsRef, SwigluAndAdd) {
  for (auto [T, F] : {std::pair<int64_t, int64_t>{1, 1}, {7, 64}, {9, 8000}}) {
    auto g = normal(gen_, T * F, 4.0f);
    if (T * F > 2) g[0] = -120.0f, g[1] = 120.0f;
    compare("swiglu", {}, {f32_tensor({T, F}, g), f32_tensor({T, F}, normal(gen_, T * F))},
            name(DType::F32, T, F));
    compare("add", {}, {f32_tensor({T, F}, g), f32_tensor({T, F}, normal(gen_, T * F))},
            name(DType::F32, T, F), 1e-7);
  }
}

TEST_F(VulkanVsRef, Gelu) {
  for (int approx : {0, 1})
    for (auto [T, F] : {std::pair<int64_t, int64_t>{1, 1}, {7, 64}, {9, 8000}}) {
      const Attrs attrs{{"approx", double(approx)}};
      const std::string what = "approx=" + std::to_string(approx) + " " + name(DType::F32, T, F);
      auto x = normal(gen_, T * F, 3.0f);
      if (T * F > 2) x[0] = -40.0f, x[1] = 40.0f;  // erf, tanh and exp saturate
      compare("gelu", attrs, {f32_tensor({T, F}, x)}, what);
      // Every x <= -4, so every output is tiny: formed as 1 + erf or 1 + tanh it is lost.
      // With lavapipe's own exp (30 ulp at |y| = 12) or fma(v, v, -v*v) folded to 0, the
      // erf form's error here was 34 * 2^-24; it is 6 * 2^-24, as on the cpu.
      for (float& v : x) v = -4.0f - 4.0f * std::fabs(v);
      compare("gelu", attrs, {f32_tensor({T, F}, x)}, what + " negative tail",
              approx == 0 ? 1e-6 : 1e-5);
    }
}

TEST_F(VulkanVsRef, LayerNorm) {
  for (int64_t N : {1, 7, 64, 257, 4099})
    for (int64_t T : {1, 7, 40})
      for (float offset : {0.0f, 1000.0f}) {
        auto x = normal(gen_, T * N, 3.0f);
        for (float& v : x) v += offset;  // a mean far above the spread: no E[x^2] - E[x]^2
        // N = 1: every row is its own mean, the output 0 (exactly, with offset 0).
        compare("layernorm", {{"eps", 1e-5}},
                {f32_tensor({T, N}, x), f32_tensor({N}, normal(gen_, N))},
                name(DType::F32, T, N) + " offset " + std::to_string(int(offset)),
                offset > 0 ? 1e-4 : 1e-5);
      }
}

TEST_F(VulkanVsRef, BiasMulScale) {
  for (auto [T, N] :
       {std::pair<int64_t, int64_t>{1, 1}, {7, 1}, {1, 7}, {7, 64}, {3, 1000}, {17, 8000}}) {
    const std::string what = name(DType::F32, T, N);
    // Correctly rounded in f32 on both sides.
    compare("bias", {}, {f32_tensor({T, N}, normal(gen_, T * N)), f32_tensor({N}, normal(gen_, N))},
            what, 1e-7);
    compare("mul", {},
            {f32_tensor({T, N}, normal(gen_, T * N)), f32_tensor({T, N}, normal(gen_, T * N))},
            what, 1e-7);
    // s is rounded to f32 first: one rounding more.
    for (double s : {0.088388347648318, -3.0, 0.0, 48.0})
      compare("scale", {{"s", s}}, {f32_tensor({T, N}, normal(gen_, T * N, 1e3f))},
              what + " s=" + std::to_string(s), 2e-7);
  }
}

TEST_F(VulkanVsRef, Softcap) {
  for (auto [T, N] : {std::pair<int64_t, int64_t>{1, 1}, {1, 7}, {7, 64}, {3, 1000}, {9, 8000}})
    for (double cap : {30.0, 50.0, 0.5}) {
      const std::string what = name(DType::F32, T, N) + " cap=" + std::to_string(cap);
      auto x = normal(gen_, T * N, 40.0f);
      if (T * N > 2) x[0] = 1e30f, x[1] = -3e38f;  // saturated far past the cap
      compare("softcap", {{"cap", cap}}, {f32_tensor({T, N}, x)}, what, 1e-6);
      // tanh(y) ~ y: formed as (e^2y - 1) / (e^2y + 1) the digits are lost.
      for (float& v : x) v = float(cap) * 1e-4f * std::tanh(v);
      compare("softcap", {{"cap", cap}}, {f32_tensor({T, N}, x)}, what + " near 0", 1e-6);
    }
}

TEST_F(VulkanVsRef, SigmoidGate) {
  for (auto [T, N] : {std::pair<int64_t, int64_t>{1, 1}, {2, 7}, {7, 64}, {3, 1000}, {9, 8000}}) {
    auto g = normal(gen_, T, 5.0f);
    if (T > 1) g[0] = -200.0f, g[1] = 200.0f;  // exp overflows either way round
    compare("sigmoid_gate", {}, {f32_tensor({T, N}, normal(gen_, T * N)), f32_tensor({T, 1}, g)},
            name(DType::F32, T, N), 1e-6);
  }
}

TEST_F(VulkanVsRef, MoeRoute) {
  for (auto [E, k] :
       {std::pair<int64_t, int64_t>{8, 2}, {60, 4}, {64, 6}, {3, 3}, {1, 1}, {128, 8}, {200, 20}})
    for (int64_t T : {1, 7, 300})
      for (int norm : {0, 1}) {
        auto l = normal(gen_, T * E, 2.0f);
        // Ties: a third of the rows on a grid of 0.5; one row all equal (the first k win).
        for (int64_t t = 0; t < T; t += 3)
          for (int64_t e = 0; e < E; ++e)
            l[size_t(t * E + e)] = std::round(l[size_t(t * E + e)] * 2) / 2;
        if (T > 1)
          for (int64_t e = 0; e < E; ++e) l[size_t(E + e)] = 0.25f;
        compare("moe_route", {{"k", double(k)}, {"norm", double(norm)}}, {f32_tensor({T, E}, l)},
                "E " + std::to_string(E) + " k " + std::to_string(k) + " T " + std::to_string(T) +
                    " norm " + std::to_string(norm),
                1e-6);
      }
}

// [T, E]: k experts per row at random, weights in [0.05, 1], zero elsewhere; expert E-1 is
// never chosen when k < E.
std::vector<float> sparse_route(int64_t T, int64_t E, int64_t k, std::mt19937& gen) {
  std::vector<float> r(size_t(T * E), 0.0f);
  std::uniform_real_distribution<float> w(0.05f, 1.0f);
  const int64_t open = k < E ? E - 1 : E;
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int64_t> order(static_cast<size_t>(open));
    for (int64_t e = 0; e < open; ++e) order[size_t(e)] = e;
    std::shuffle(order.begin(), order.end(), gen);
    for (int64_t i = 0; i < k; ++i) r[size_t(t * E + order[size_t(i)])] = w(gen);
  }
  return r;
}

TEST_F(VulkanVsRef, MoeFfn) {
  struct Case {
    int64_t T, D, H, E, k;
  };
  for (DType wt : kWeightTypes)
    for (Case c : {Case{1, 64, 48, 8, 2}, Case{5, 67, 43, 4, 2}, Case{13, 128, 96, 8, 3},
                   Case{3, 16, 8, 3, 3}, Case{40, 72, 200, 6, 2}, Case{2, 1, 1, 2, 1},
                   Case{7, 300, 130, 5, 5}}) {
      const float sd = 1.0f / std::sqrt(float(c.D)), sh = 1.0f / std::sqrt(float(c.H));
      std::vector<Tensor> in = {f32_tensor({c.T, c.D}, normal(gen_, c.T * c.D)),
                                f32_tensor({c.T, c.E}, sparse_route(c.T, c.E, c.k, gen_)),
                                f32_tensor({c.E, c.H, c.D}, normal(gen_, c.E * c.H * c.D, sd), wt),
                                f32_tensor({c.E, c.H, c.D}, normal(gen_, c.E * c.H * c.D, sd), wt),
                                f32_tensor({c.E, c.D, c.H}, normal(gen_, c.E * c.D * c.H, sh), wt)};
      // The expert no token chooses holds NaN everywhere: it must not be read into the sum.
      if (c.k < c.E)
        for (size_t i = 2; i < 5; ++i) {
          const int64_t per = in[i].numel() / c.E, size = int64_t(dtype_size(wt));
          std::memset(in[i].mutable_bytes() + (c.E - 1) * per * size, 0xFF, size_t(per * size));
        }
      compare("moe_ffn", {}, in,
              std::string(dtype_name(wt)) + " T " + std::to_string(c.T) + " D " +
                  std::to_string(c.D) + " H " + std::to_string(c.H) + " E " + std::to_string(c.E) +
                  " k " + std::to_string(c.k),
              2e-5);
    }
}

TEST_F(VulkanVsRef, AttentionWithWindowAndSoftcap) {
  struct Case {
    int64_t T, extra, window;
    double softcap;
  };
  for (Case c : {Case{1, 40, 16, 0}, Case{1, 40, 1, 0}, Case{7, 0, 3, 0}, Case{7, 30, 5, 0},
                 Case{30, 0, 7, 0}, Case{5, 10, 100, 0}, Case{3, 20, 0, 50}, Case{6, 27, 10, 20},
                 Case{1, 300, 64, 30}, Case{2, 1500, 200, 50}}) {
    const int64_t H = 8, KV = 2, hd = 36, P = c.T + c.extra;
    Attrs attrs{{"n_heads", double(H)},
                {"n_kv_heads", double(KV)},
                {"head_dim", double(hd)},
                {"scale", 1.0 / 6}};
    if (c.window) attrs.set("window", double(c.window));
    if (c.softcap) attrs.set("softcap", c.softcap);
    // Scores with a spread of about 16: the cap bites.
    compare("attention", attrs,
            {f32_tensor({c.T, H * hd}, normal(gen_, c.T * H * hd, 2.0f)),
             f32_tensor({P, KV * hd}, normal(gen_, P * KV * hd, 2.0f)),
             f32_tensor({P, KV * hd}, normal(gen_, P * KV * hd))},
            "T " + std::to_string(c.T) + " P " + std::to_string(P) + " window " +
                std::to_string(c.window) + " softcap " + std::to_string(c.softcap),
            1e-4);
  }
}

TEST_F(VulkanVsRef, RopeWithFreqFactors) {
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
              {f32_tensor({T, H * hd}, normal(gen_, T * H * hd)),
               i32_tensor({T}, ints(gen_, T, 0, 5000)), f32_tensor({rd / 2}, factors)},
              "pairing " + std::to_string(pairing) + " T " + std::to_string(T), 2e-6);
    }
}

TEST_F(VulkanVsRef, ZeroRows) {
  compare("matmul", {}, {f32_tensor({0, 8}, {}), f32_tensor({4, 8}, normal(gen_, 32))}, "T=0");
  compare("add", {}, {f32_tensor({0, 8}, {}), f32_tensor({0, 8}, {})}, "T=0");
}

// A tensor at an odd 2-byte offset (f16) and one at an unaligned offset: the first runs, the
// second is refused with the reason.
TEST(Vulkan, OffsetsAndRefusals) {
  REQUIRE_VULKAN_DEVICE();
  Backend& be = *device();
  auto ref = make_ref_backend(BackendUri::parse("ref"));
  std::mt19937 gen(7);
  const int64_t T = 2, K = 9, N = 3;
  std::vector<float> x = normal(gen, T * K), w = normal(gen, N * K);
  Tensor wt = f32_tensor({N, K}, w, DType::F16);
  auto run = [&](Backend& b, size_t w_offset) {
    BufferId bx = b.alloc(T * K * 4), bw = b.alloc(wt.nbytes() + 8), bo = b.alloc(T * N * 4);
    b.write(bx, 0, x.data(), T * K * 4);
    b.write(bw, w_offset, wt.bytes(), wt.nbytes());
    OpCall c{Op::Matmul,
             {},
             {{bx, 0, DType::F32, {T, K}}, {bw, w_offset, DType::F16, {N, K}}},
             {{bo, 0, DType::F32, {T, N}}},
             "test"};
    Support s = b.supports(c);
    std::vector<float> out(size_t(T * N));
    if (s.ok) {
      b.run(c);
      b.sync();
      b.read(bo, 0, out.data(), out.size() * 4);
    }
    b.free(bx), b.free(bw), b.free(bo);
    return std::make_pair(s, out);
  };
  auto [s_ref, want] = run(*ref, 2);
  auto [s2, got] = run(be, 2);
  ASSERT_TRUE(s2.ok) << s2.reason;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << i;

  OpCall odd{Op::Add,
             {},
             {{1, 1, DType::F32, {1, 4}}, {2, 0, DType::F32, {1, 4}}},
             {{3, 0, DType::F32, {1, 4}}}};
  Support s = be.supports(odd);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("aligned"), std::string::npos) << s.reason;
}

TEST(Vulkan, RefusesCallsPastTheDeviceLimits) {
  REQUIRE_VULKAN_DEVICE();
  // A weight larger than any storage buffer window (4 GiB of f32): supports() looks at the
  // shapes only, so nothing is allocated.
  const int64_t N = 1 << 20, K = 1 << 10;
  OpCall big{Op::Matmul,
             {},
             {{1, 0, DType::F32, {1, K}}, {2, 0, DType::F32, {N, K}}},
             {{3, 0, DType::F32, {1, N}}},
             "test"};
  Support s = device()->supports(big);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("maxStorageBufferRange"), std::string::npos) << s.reason;
  OpCall malformed{Op::Add, {}, {}, {}, "test"};  // no tensors: refused, not crashed
  EXPECT_FALSE(device()->supports(malformed).ok);
}

TEST(Vulkan, DeviceSelectionAndInfo) {
  REQUIRE_VULKAN_DEVICE();
  std::vector<DeviceListing> devices = vulkan_devices();
  ASSERT_FALSE(devices.empty());
  EXPECT_EQ(devices[0].uri, "vulkan:0");
  EXPECT_NE(devices[0].description.find("storage buffer range"), std::string::npos)
      << devices[0].description;
  EXPECT_EQ(device()->info().name, "vulkan");
  EXPECT_NO_THROW(make_vulkan_backend(BackendUri::parse("vulkan:0")));
  EXPECT_THROW(make_vulkan_backend(BackendUri::parse("vulkan:99")), Error);
  EXPECT_THROW(make_vulkan_backend(BackendUri::parse("vulkan:no-such-device-name")), Error);
  register_builtin_backends();
  EXPECT_NO_THROW(open_backend("vulkan"));
}

TEST(Vulkan, StoriesGoldenTokens) {
  REQUIRE_VULKAN_DEVICE();
  ModelFile m = load_model(testing::shared_path("models/stories260K/stories260K.bin"));
  Tokenizer tok = load_tokenizer(testing::shared_path("models/stories260K/tok512.bin"), nullptr,
                                 m.config.vocab_size);
  Session session(m, Placement("vulkan"), 512);
  for (const testing::Golden& g : testing::stories_goldens()) {
    GenerateOptions o;
    o.steps = g.steps;
    o.stop_tokens = {tok.vocab().eos, tok.vocab().bos};
    GenerateResult r = generate(session, tok.encode(g.prompt, true), o);
    EXPECT_EQ(r.token_ids, g.token_ids) << g.file;
  }
}

#endif

}  // namespace
}  // namespace tapml

// The GPU backends (vulkan, opencl) against ref, from one source. Op by op (GpuVsRef): every
// op at ordinary and awkward sizes (tails, GQA, long rows, f16 weights at 2-byte offsets,
// tensors inside their buffers), with f32/f16/bf16 weights, each call judged twice: by the
// oracle as replay judges a carved test (calibrated with the noise of ref?acc=f32), and
// against a fixed bound relative to the output's largest element, measured on lavapipe and
// PoCL (0: bit-exact), which is tighter than the oracle where an op's only error is rounding.
// On a whole model (GpuModel, stories260K): llama2.c's golden tokens, a corpus carved on ref
// that replays completely, and a migration that passes and pins a fault planted in one site.
// Each test runs once per backend (VulkanOrOpenCl/GpuVsRef.NAME/vulkan, .../opencl) and
// skips, saying why, where the build lacks that backend or the machine a device for it
// (mesa-vulkan-drivers gives lavapipe, pocl-opencl-icd PoCL).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/host_call.h"
#include "backends/builtin.h"
#include "check/oracle.h"
#include "core/error.h"
#include "model/model_file.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/call_program.h"
#include "support/golden.h"
#include "support/gpu_backends.h"
#include "support/shared.h"
#include "support/stories.h"
#include "support/tensors.h"
#include "tokenizer/load.h"

namespace tapml {
namespace {

using testing::attention_attrs;
using testing::f32_tensor;
using testing::i32_tensor;
using testing::ints;
using testing::normal;

// The GPU backend of the parameter; the test is skipped, saying why, when it cannot be opened.
class GpuTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { REQUIRE_GPU_BACKEND(GetParam()); }
  Backend& device() { return *testing::gpu_backend(GetParam()); }
};

class GpuVsRef : public GpuTest {
 protected:
  // The oracle's verdict on the device's outputs against ref's, with the noise of a plain
  // f32 computation (ref?acc=f32) as the calibrated floor, as a carved test has it; and every
  // output within rel_tol of its largest magnitude, finite, guards intact.
  void compare(const std::string& op_text, const Attrs& attrs, const std::vector<Tensor>& in,
               const std::string& what, double rel_tol = 1e-5) {
    const Op op = parse_op(op_text);
    HostCallResult want = run_host_call(*ref_, op, attrs, in, "test");
    HostCallResult plain = run_host_call(*ref_f32_, op, attrs, in, "test");
    HostCallResult got = run_host_call(device(), op, attrs, in, "test");
    ASSERT_EQ(got.outputs.size(), want.outputs.size());
    std::vector<double> noise;
    for (size_t o = 0; o < want.outputs.size(); ++o)
      noise.push_back(measure(want.outputs[o], plain.outputs[o], 0).error);
    std::vector<TensorType> types;
    for (const Tensor& t : in) types.push_back({t.dtype(), t.shape()});
    const int64_t K = op_def(op).reduction_length(types, attrs);
    Verdict v =
        judge(TolerancePolicy{}, op, K, want.outputs, got.outputs, got.guards_intact, noise);
    EXPECT_TRUE(v.pass) << op_text << " " << what << ": " << v.detail;
    for (size_t o = 0; o < got.outputs.size(); ++o) {
      EXPECT_TRUE(got.guards_intact[o]) << op_text << " " << what << " wrote outside output " << o;
      std::vector<float> g = got.outputs[o].to_f32(), w = want.outputs[o].to_f32();
      ASSERT_EQ(g.size(), w.size());
      double scale = 0, err = 0;
      size_t worst = 0;
      for (size_t i = 0; i < w.size(); ++i) {
        ASSERT_TRUE(std::isfinite(g[i]))
            << op_text << " " << what << ": element " << i << " is " << g[i];
        scale = std::max(scale, std::fabs(double(w[i])));
        double e = std::fabs(double(g[i]) - w[i]);
        if (e > err) err = e, worst = i;
      }
      EXPECT_LE(err, rel_tol * std::max(scale, 1e-30))
          << op_text << " " << what << ": worst element " << worst << " got " << g[worst]
          << " want " << w[worst];
    }
  }

  std::unique_ptr<Backend> ref_ = open_backend("ref");
  std::unique_ptr<Backend> ref_f32_ = open_backend("ref?acc=f32");
  std::mt19937 gen_{4321};
};

const DType kWeightTypes[] = {DType::F32, DType::F16, DType::BF16};

std::string name(DType t, int64_t a, int64_t b, int64_t c = -1) {
  return std::string(dtype_name(t)) + " " + std::to_string(a) + "x" + std::to_string(b) +
         (c >= 0 ? "x" + std::to_string(c) : "");
}

TEST_P(GpuVsRef, Matmul) {
  for (DType wt : kWeightTypes)
    for (int64_t T : {1, 3, 4, 5, 13, 16, 70})
      for (int64_t K : {1, 7, 67, 256, 264, 4099})
        for (int64_t N : {1, 5, 33, 67})
          compare("matmul", {},
                  {f32_tensor({T, K}, normal(gen_, T * K)),
                   f32_tensor({N, K}, normal(gen_, N * K), wt)},
                  name(wt, T, K, N), K > 1000 ? 2e-5 : 1e-5);
}

TEST_P(GpuVsRef, Embedding) {
  for (DType wt : kWeightTypes)
    for (int64_t D : {1, 7, 64})
      for (int64_t T : {1, 7, 300})
        compare(
            "embedding", {},
            {f32_tensor({50, D}, normal(gen_, 50 * D), wt), i32_tensor({T}, ints(gen_, T, 0, 49))},
            name(wt, T, D), 0);
}

TEST_P(GpuVsRef, EmbeddingRejectsBadIds) {
  for (int32_t bad : {-1, 10}) {
    EXPECT_THROW(
        run_host_call(device(), Op::Embedding, {},
                      {f32_tensor({10, 4}, normal(gen_, 40)), i32_tensor({3}, {0, bad, 2})}),
        Error)
        << bad;
  }
}

TEST_P(GpuVsRef, Rmsnorm) {
  for (DType wt : kWeightTypes)
    for (int64_t D : {1, 7, 257, 4096, 100000})
      for (int64_t T : {1, 7})
        compare(
            "rmsnorm", {{"eps", 1e-5}},
            {f32_tensor({T, D}, normal(gen_, T * D, 3.0f)), f32_tensor({D}, normal(gen_, D), wt)},
            name(wt, T, D));
}

TEST_P(GpuVsRef, Rope) {
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

TEST_P(GpuVsRef, RopeWithFreqFactors) {
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

TEST_P(GpuVsRef, KvStore) {
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
      run_host_call(device(), Op::KvStore, {},
                    {f32_tensor({4, 2}, normal(gen_, 8)), f32_tensor({4, 2}, normal(gen_, 8)),
                     f32_tensor({2, 2}, normal(gen_, 4)), f32_tensor({2, 2}, normal(gen_, 4)),
                     i32_tensor({1}, {3})}),
      Error);
}

TEST_P(GpuVsRef, Attention) {
  struct Case {
    int64_t H, KV, hd;
  };
  for (Case c : {Case{8, 4, 16}, Case{8, 2, 20}, Case{8, 8, 64}, Case{4, 1, 3}, Case{2, 2, 128},
                 Case{2, 1, 200}})
    for (int64_t T : {1, 7})
      for (int64_t extra : {0, 5, 33, 1500}) {
        const int64_t P = T + extra;
        const Attrs attrs = attention_attrs(c.H, c.KV, c.hd);
        compare("attention", attrs,
                {f32_tensor({T, c.H * c.hd}, normal(gen_, T * c.H * c.hd)),
                 f32_tensor({P, c.KV * c.hd}, normal(gen_, P * c.KV * c.hd)),
                 f32_tensor({P, c.KV * c.hd}, normal(gen_, P * c.KV * c.hd))},
                "H " + std::to_string(c.H) + " KV " + std::to_string(c.KV) + " hd " +
                    std::to_string(c.hd) + " T " + std::to_string(T) + " P " + std::to_string(P),
                2e-5);
      }
}

TEST_P(GpuVsRef, AttentionWithWindowAndSoftcap) {
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

TEST_P(GpuVsRef, SwigluAndAdd) {
  for (auto [T, F] : {std::pair<int64_t, int64_t>{1, 1}, {7, 64}, {9, 8000}}) {
    auto g = normal(gen_, T * F, 4.0f);
    if (T * F > 2) g[0] = -120.0f, g[1] = 120.0f;
    compare("swiglu", {}, {f32_tensor({T, F}, g), f32_tensor({T, F}, normal(gen_, T * F))},
            name(DType::F32, T, F));
    compare("add", {}, {f32_tensor({T, F}, g), f32_tensor({T, F}, normal(gen_, T * F))},
            name(DType::F32, T, F), 1e-7);
  }
}

TEST_P(GpuVsRef, Gelu) {
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

TEST_P(GpuVsRef, LayerNorm) {
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

TEST_P(GpuVsRef, BiasMulScale) {
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

TEST_P(GpuVsRef, Softcap) {
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

TEST_P(GpuVsRef, SigmoidGate) {
  for (auto [T, N] : {std::pair<int64_t, int64_t>{1, 1}, {2, 7}, {7, 64}, {3, 1000}, {9, 8000}}) {
    auto g = normal(gen_, T, 5.0f);
    if (T > 1) g[0] = -200.0f, g[1] = 200.0f;  // exp overflows either way round
    compare("sigmoid_gate", {}, {f32_tensor({T, N}, normal(gen_, T * N)), f32_tensor({T, 1}, g)},
            name(DType::F32, T, N), 1e-6);
  }
}

TEST_P(GpuVsRef, MoeRoute) {
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

TEST_P(GpuVsRef, MoeFfn) {
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

TEST_P(GpuVsRef, ZeroRows) {
  compare("matmul", {}, {f32_tensor({0, 8}, {}), f32_tensor({4, 8}, normal(gen_, 32))}, "T=0");
  compare("add", {}, {f32_tensor({0, 8}, {}), f32_tensor({0, 8}, {})}, "T=0");
}

// Runs matmul with x, w and out at the given byte offsets of their buffers on `b`.
std::pair<Support, std::vector<float>> matmul_at(Backend& b, const std::vector<float>& x,
                                                 const Tensor& w, int64_t T, size_t x_offset,
                                                 size_t w_offset, size_t out_offset) {
  const int64_t K = w.shape()[1], N = w.shape()[0];
  BufferId bx = b.alloc(x_offset + T * K * 4), bw = b.alloc(w_offset + w.nbytes()),
           bo = b.alloc(out_offset + T * N * 4);
  b.write(bx, x_offset, x.data(), T * K * 4);
  b.write(bw, w_offset, w.bytes(), w.nbytes());
  OpCall c{Op::Matmul,
           {},
           {{bx, x_offset, DType::F32, {T, K}}, {bw, w_offset, w.dtype(), {N, K}}},
           {{bo, out_offset, DType::F32, {T, N}}},
           "test"};
  Support s = b.supports(c);
  std::vector<float> out(size_t(T * N));
  if (s.ok) {
    b.run(c);
    b.sync();
    b.read(bo, out_offset, out.data(), out.size() * 4);
  }
  b.free(bx), b.free(bw), b.free(bo);
  return {s, out};
}

// Tensors inside their buffers (an f16 weight at an odd 2-byte offset, f32 ones past a
// prefix) run; a tensor at an unaligned offset is refused with the reason.
TEST_P(GpuVsRef, OffsetsAndRefusals) {
  std::mt19937 gen(7);
  const int64_t T = 5, K = 9, N = 3;
  std::vector<float> x = normal(gen, T * K);
  for (DType wt : {DType::F16, DType::F32}) {
    Tensor w = f32_tensor({N, K}, normal(gen, N * K), wt);
    const size_t wo = wt == DType::F16 ? 2 : 12;
    auto [s_ref, want] = matmul_at(*ref_, x, w, T, 36, wo, 20);
    auto [s, got] = matmul_at(device(), x, w, T, 36, wo, 20);
    ASSERT_TRUE(s.ok) << s.reason;
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << i;
  }
  OpCall odd{Op::Add,
             {},
             {{1, 1, DType::F32, {1, 4}}, {2, 0, DType::F32, {1, 4}}},
             {{3, 0, DType::F32, {1, 4}}},
             "test"};
  Support s = device().supports(odd);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("aligned"), std::string::npos) << s.reason;
  OpCall malformed{Op::Add, {}, {}, {}, "test"};  // no tensors: refused, not crashed
  EXPECT_FALSE(device().supports(malformed).ok);
}

INSTANTIATE_TEST_SUITE_P(VulkanOrOpenCl, GpuVsRef, ::testing::ValuesIn(testing::gpu_backend_uris()),
                         [](const auto& info) { return info.param; });

class GpuModel : public GpuTest {};

TEST_P(GpuModel, StoriesGoldenTokens) {
  ModelFile m = load_model(testing::shared_path("models/stories260K/stories260K.bin"));
  Tokenizer tok = load_tokenizer(testing::shared_path("models/stories260K/tok512.bin"), nullptr,
                                 m.config.vocab_size);
  Session session(m, Placement(GetParam()), 512);
  for (const testing::Golden& g : testing::stories_goldens()) {
    GenerateOptions o;
    o.steps = g.steps;
    o.stop_tokens = {tok.vocab().eos, tok.vocab().bos};
    GenerateResult r = generate(session, tok.encode(g.prompt, true), o);
    EXPECT_EQ(r.token_ids, g.token_ids) << g.file;
  }
}

TEST_P(GpuModel, CarvedStoriesCorpusReplaysCompletely) {
  testing::expect_stories_corpus_replays(GetParam(),
                                         testing::temp_dir() + "/" + GetParam() + "_stories.db");
}

TEST_P(GpuModel, MigrationPassesAndPinsAFault) {
  testing::expect_stories_migration_pins_a_fault(GetParam(), 24);
}

INSTANTIATE_TEST_SUITE_P(VulkanOrOpenCl, GpuModel, ::testing::ValuesIn(testing::gpu_backend_uris()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace tapml

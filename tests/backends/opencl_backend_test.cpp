// The opencl backend against ref, op by op, through the oracle: each call is judged as replay
// judges a carved test (calibrated with the noise of ref?acc=f32), at ordinary and awkward
// sizes (tails, GQA, offsets, long rows, f16 weights at 2-byte offsets), with f32/f16/bf16
// weights; device limits refused by supports(); device selection and listing. Every test
// skips, saying why, where the build has no OpenCL or the machine no OpenCL device.
#include <gtest/gtest.h>

#include <algorithm>
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
#include "check/oracle.h"
#include "core/error.h"
#include "support/tensors.h"
#ifdef TAPML_WITH_OPENCL
#include "backends/opencl/opencl_backend.h"
#endif

namespace tapml {
namespace {

#ifndef TAPML_WITH_OPENCL

TEST(OpenCl, Skipped) { GTEST_SKIP() << "built without OpenCL (TAPML_WITH_OPENCL is off)"; }

#else

// The device the tests share, opened once, or null with the reason.
std::unique_ptr<Backend>& device(std::string* why = nullptr) {
  static std::string reason;
  static std::unique_ptr<Backend> be = []() -> std::unique_ptr<Backend> {
    try {
      return make_opencl_backend(BackendUri::parse("opencl"));
    } catch (const std::exception& e) {
      reason = e.what();
      return nullptr;
    }
  }();
  if (why) *why = reason;
  return be;
}

#define REQUIRE_OPENCL_DEVICE()                                       \
  do {                                                                \
    std::string why_;                                                 \
    if (!device(&why_)) GTEST_SKIP() << "no OpenCL device: " << why_; \
  } while (0)

using testing::f32_tensor;
using testing::i32_tensor;
using testing::ints;
using testing::normal;

class OpenClVsRef : public ::testing::Test {
 protected:
  void SetUp() override { REQUIRE_OPENCL_DEVICE(); }

  // The oracle's verdict on the device's outputs against ref's, with the noise of a plain
  // f32 computation (ref?acc=f32) as the calibrated floor, as a carved test has it.
  void compare(const std::string& op_text, const Attrs& attrs, const std::vector<Tensor>& in,
               const std::string& what) {
    const Op op = parse_op(op_text);
    HostCallResult want = run_host_call(*ref_, op, attrs, in, "test");
    HostCallResult plain = run_host_call(*ref_f32_, op, attrs, in, "test");
    HostCallResult got = run_host_call(*device(), op, attrs, in, "test");
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
    ++judged_;
  }

  std::unique_ptr<Backend> ref_ = make_ref_backend(BackendUri::parse("ref"));
  std::unique_ptr<Backend> ref_f32_ = make_ref_backend(BackendUri::parse("ref?acc=f32"));
  std::mt19937 gen_{4321};
  int judged_ = 0;
};

const DType kWeightTypes[] = {DType::F32, DType::F16, DType::BF16};

std::string name(DType t, int64_t a, int64_t b, int64_t c = -1) {
  return std::string(dtype_name(t)) + " " + std::to_string(a) + "x" + std::to_string(b) +
         (c >= 0 ? "x" + std::to_string(c) : "");
}

TEST_F(OpenClVsRef, Matmul) {
  for (DType wt : kWeightTypes)
    for (int64_t T : {1, 3, 4, 5, 13})
      for (int64_t K : {1, 7, 67, 256, 4099})
        for (int64_t N : {1, 5, 33})
          compare("matmul", {},
                  {f32_tensor({T, K}, normal(gen_, T * K)),
                   f32_tensor({N, K}, normal(gen_, N * K), wt)},
                  name(wt, T, K, N));
}

TEST_F(OpenClVsRef, Embedding) {
  for (DType wt : kWeightTypes)
    for (int64_t D : {1, 7, 64})
      for (int64_t T : {1, 7, 300})
        compare(
            "embedding", {},
            {f32_tensor({50, D}, normal(gen_, 50 * D), wt), i32_tensor({T}, ints(gen_, T, 0, 49))},
            name(wt, T, D));
}

TEST_F(OpenClVsRef, EmbeddingRejectsBadIds) {
  for (int32_t bad : {-1, 10}) {
    EXPECT_THROW(
        run_host_call(*device(), Op::Embedding, {},
                      {f32_tensor({10, 4}, normal(gen_, 40)), i32_tensor({3}, {0, bad, 2})}),
        Error)
        << bad;
  }
}

TEST_F(OpenClVsRef, Rmsnorm) {
  for (DType wt : kWeightTypes)
    for (int64_t D : {1, 7, 257, 4096, 100000})
      for (int64_t T : {1, 7})
        compare(
            "rmsnorm", {{"eps", 1e-5}},
            {f32_tensor({T, D}, normal(gen_, T * D, 3.0f)), f32_tensor({D}, normal(gen_, D), wt)},
            name(wt, T, D));
}

TEST_F(OpenClVsRef, Rope) {
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
                "pairing " + std::to_string(pairing) + " " + name(DType::F32, c.H, c.hd, c.rd));
      }
}

TEST_F(OpenClVsRef, RopeWithFreqFactors) {
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
              "pairing " + std::to_string(pairing) + " T " + std::to_string(T));
    }
}

TEST_F(OpenClVsRef, KvStore) {
  const int64_t S = 16, C = 12;
  for (int64_t T : {1, 3, 16})
    for (int32_t pos : {0, 5, int32_t(S - T)}) {
      if (pos + T > S) continue;
      compare("kv_store", {},
              {f32_tensor({S, C}, normal(gen_, S * C)), f32_tensor({S, C}, normal(gen_, S * C)),
               f32_tensor({T, C}, normal(gen_, T * C)), f32_tensor({T, C}, normal(gen_, T * C)),
               i32_tensor({1}, {pos})},
              "T " + std::to_string(T) + " pos " + std::to_string(pos));
    }
  EXPECT_THROW(
      run_host_call(*device(), Op::KvStore, {},
                    {f32_tensor({4, 2}, normal(gen_, 8)), f32_tensor({4, 2}, normal(gen_, 8)),
                     f32_tensor({2, 2}, normal(gen_, 4)), f32_tensor({2, 2}, normal(gen_, 4)),
                     i32_tensor({1}, {3})}),
      Error);
}

TEST_F(OpenClVsRef, Attention) {
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
                    std::to_string(c.hd) + " T " + std::to_string(T) + " P " + std::to_string(P));
      }
}

TEST_F(OpenClVsRef, AttentionWithWindowAndSoftcap) {
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
    compare("attention", attrs,
            {f32_tensor({c.T, H * hd}, normal(gen_, c.T * H * hd, 2.0f)),
             f32_tensor({P, KV * hd}, normal(gen_, P * KV * hd, 2.0f)),
             f32_tensor({P, KV * hd}, normal(gen_, P * KV * hd))},
            "T " + std::to_string(c.T) + " P " + std::to_string(P) + " window " +
                std::to_string(c.window) + " softcap " + std::to_string(c.softcap));
  }
}

TEST_F(OpenClVsRef, SwigluAndAdd) {
  for (auto [T, F] : {std::pair<int64_t, int64_t>{1, 1}, {7, 64}, {9, 8000}}) {
    auto g = normal(gen_, T * F, 4.0f);
    if (T * F > 2) g[0] = -120.0f, g[1] = 120.0f;
    compare("swiglu", {}, {f32_tensor({T, F}, g), f32_tensor({T, F}, normal(gen_, T * F))},
            name(DType::F32, T, F));
    compare("add", {}, {f32_tensor({T, F}, g), f32_tensor({T, F}, normal(gen_, T * F))},
            name(DType::F32, T, F));
  }
}

TEST_F(OpenClVsRef, Gelu) {
  for (int approx : {0, 1})
    for (auto [T, F] : {std::pair<int64_t, int64_t>{1, 1}, {7, 64}, {9, 8000}}) {
      const Attrs attrs{{"approx", double(approx)}};
      const std::string what = "approx=" + std::to_string(approx) + " " + name(DType::F32, T, F);
      auto x = normal(gen_, T * F, 3.0f);
      if (T * F > 2) x[0] = -40.0f, x[1] = 40.0f;
      compare("gelu", attrs, {f32_tensor({T, F}, x)}, what);
      // Every x <= -4: every output is tiny, and lost when formed as 1 + erf or 1 + tanh.
      for (float& v : x) v = -4.0f - 4.0f * std::fabs(v);
      compare("gelu", attrs, {f32_tensor({T, F}, x)}, what + " negative tail");
    }
}

TEST_F(OpenClVsRef, LayerNorm) {
  for (int64_t N : {1, 7, 64, 257, 4099})
    for (int64_t T : {1, 7, 40})
      for (float offset : {0.0f, 1000.0f}) {
        auto x = normal(gen_, T * N, 3.0f);
        for (float& v : x) v += offset;  // a mean far above the spread
        compare("layernorm", {{"eps", 1e-5}},
                {f32_tensor({T, N}, x), f32_tensor({N}, normal(gen_, N))},
                name(DType::F32, T, N) + " offset " + std::to_string(int(offset)));
      }
}

TEST_F(OpenClVsRef, BiasMulScaleSoftcapSigmoidGate) {
  for (auto [T, N] :
       {std::pair<int64_t, int64_t>{1, 1}, {7, 1}, {1, 7}, {7, 64}, {3, 1000}, {17, 8000}}) {
    const std::string what = name(DType::F32, T, N);
    compare("bias", {}, {f32_tensor({T, N}, normal(gen_, T * N)), f32_tensor({N}, normal(gen_, N))},
            what);
    compare("mul", {},
            {f32_tensor({T, N}, normal(gen_, T * N)), f32_tensor({T, N}, normal(gen_, T * N))},
            what);
    for (double s : {0.088388347648318, -3.0, 0.0, 48.0})
      compare("scale", {{"s", s}}, {f32_tensor({T, N}, normal(gen_, T * N, 1e3f))},
              what + " s=" + std::to_string(s));
    for (double cap : {30.0, 0.5}) {
      auto x = normal(gen_, T * N, 40.0f);
      if (T * N > 2) x[0] = 1e30f, x[1] = -3e38f;  // saturated far past the cap
      compare("softcap", {{"cap", cap}}, {f32_tensor({T, N}, x)}, what);
      for (float& v : x) v = float(cap) * 1e-4f * std::tanh(v);  // tanh(y) ~ y
      compare("softcap", {{"cap", cap}}, {f32_tensor({T, N}, x)}, what + " near 0");
    }
    auto g = normal(gen_, T, 5.0f);
    if (T > 1) g[0] = -200.0f, g[1] = 200.0f;  // exp overflows either way round
    compare("sigmoid_gate", {}, {f32_tensor({T, N}, normal(gen_, T * N)), f32_tensor({T, 1}, g)},
            what);
  }
}

TEST_F(OpenClVsRef, MoeRoute) {
  for (auto [E, k] :
       {std::pair<int64_t, int64_t>{8, 2}, {60, 4}, {3, 3}, {1, 1}, {128, 8}, {200, 20}})
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
                    " norm " + std::to_string(norm));
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

TEST_F(OpenClVsRef, MoeFfn) {
  struct Case {
    int64_t T, D, H, E, k;
  };
  for (DType wt : kWeightTypes)
    for (Case c : {Case{1, 64, 48, 8, 2}, Case{5, 67, 43, 4, 2}, Case{13, 128, 96, 8, 3},
                   Case{3, 16, 8, 3, 3}, Case{2, 1, 1, 2, 1}, Case{7, 300, 130, 5, 5}}) {
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
                  " k " + std::to_string(c.k));
    }
}

TEST_F(OpenClVsRef, ZeroRows) {
  compare("matmul", {}, {f32_tensor({0, 8}, {}), f32_tensor({4, 8}, normal(gen_, 32))}, "T=0");
  compare("add", {}, {f32_tensor({0, 8}, {}), f32_tensor({0, 8}, {})}, "T=0");
}

// Runs matmul with x, w and out at the given byte offsets of their buffers on `b`.
std::pair<Support, std::vector<float> > matmul_at(Backend& b, const std::vector<float>& x,
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
TEST(OpenCl, OffsetsAndRefusals) {
  REQUIRE_OPENCL_DEVICE();
  auto ref = make_ref_backend(BackendUri::parse("ref"));
  std::mt19937 gen(7);
  const int64_t T = 5, K = 9, N = 3;
  std::vector<float> x = normal(gen, T * K);
  for (DType wt : {DType::F16, DType::F32}) {
    Tensor w = f32_tensor({N, K}, normal(gen, N * K), wt);
    const size_t wo = wt == DType::F16 ? 2 : 12;
    auto [s_ref, want] = matmul_at(*ref, x, w, T, 36, wo, 20);
    auto [s, got] = matmul_at(*device(), x, w, T, 36, wo, 20);
    ASSERT_TRUE(s.ok) << s.reason;
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << i;
  }
  OpCall odd{Op::Add,
             {},
             {{1, 1, DType::F32, {1, 4}}, {2, 0, DType::F32, {1, 4}}},
             {{3, 0, DType::F32, {1, 4}}},
             "test"};
  Support s = device()->supports(odd);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("aligned"), std::string::npos) << s.reason;
}

TEST(OpenCl, RefusesCallsPastTheDeviceLimits) {
  REQUIRE_OPENCL_DEVICE();
  // A weight larger than any allocation the device allows (2^50 bytes of f32): supports()
  // looks at the shapes only, so nothing is allocated.
  const int64_t N = int64_t(1) << 36, K = 1 << 12;
  OpCall big{Op::Matmul,
             {},
             {{1, 0, DType::F32, {1, K}}, {2, 0, DType::F32, {N, K}}},
             {{3, 0, DType::F32, {1, N}}},
             "test"};
  Support s = device()->supports(big);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("CL_DEVICE_MAX_MEM_ALLOC_SIZE"), std::string::npos) << s.reason;
  EXPECT_THROW(device()->alloc(size_t(1) << 50), Error);
  // Attention scores past the allocation limit: T * H * P floats.
  OpCall scores{Op::Attention,
                {{"n_heads", 1024.0}, {"n_kv_heads", 1.0}, {"head_dim", 1.0}, {"scale", 1.0}},
                {{1, 0, DType::F32, {1 << 16, 1024}},
                 {2, 0, DType::F32, {1 << 16, 1}},
                 {3, 0, DType::F32, {1 << 16, 1}}},
                {{4, 0, DType::F32, {1 << 16, 1024}}},
                "test"};
  s = device()->supports(scores);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("scores need"), std::string::npos) << s.reason;
  // A quantized weight past the limit, measured in its blocks' bytes (2^50 of Q4_0).
  OpCall quant{Op::Matmul,
               {},
               {{1, 0, DType::F32, {1, K}}, {2, 0, DType::Q4_0, {N * 4, K}}},
               {{3, 0, DType::F32, {1, N * 4}}},
               "test"};
  s = device()->supports(quant);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("CL_DEVICE_MAX_MEM_ALLOC_SIZE"), std::string::npos) << s.reason;
  OpCall malformed{Op::Add, {}, {}, {}, "test"};  // no tensors: refused, not crashed
  EXPECT_FALSE(device()->supports(malformed).ok);
}

TEST(OpenCl, DeviceSelectionAndListing) {
  REQUIRE_OPENCL_DEVICE();
  std::vector<DeviceListing> devices = opencl_devices();
  ASSERT_FALSE(devices.empty());
  EXPECT_EQ(devices[0].uri, "opencl:0:0");
  for (const char* field : {"global memory", "max allocation", "work-group size", "local memory",
                            "cl_khr_fp16", "cl_khr_subgroups", "cl_khr_int64_base_atomics"})
    EXPECT_NE(devices[0].description.find(field), std::string::npos) << devices[0].description;
  EXPECT_EQ(device()->info().name, "opencl");
  EXPECT_GT(device()->info().max_buffer_bytes, 0u);
  EXPECT_NO_THROW(make_opencl_backend(BackendUri::parse("opencl:0")));
  EXPECT_NO_THROW(make_opencl_backend(BackendUri::parse("opencl:0:0")));
  EXPECT_THROW(make_opencl_backend(BackendUri::parse("opencl:99")), Error);
  EXPECT_THROW(make_opencl_backend(BackendUri::parse("opencl:0:99")), Error);
  EXPECT_THROW(make_opencl_backend(BackendUri::parse("opencl:gpu")), Error);
  EXPECT_THROW(make_opencl_backend(BackendUri::parse("opencl?x=1")), Error);
  register_builtin_backends();
  EXPECT_NO_THROW(open_backend("opencl"));
  bool listed = false;
  for (const BackendKind& k : registered_backends())
    if (k.scheme == "opencl") listed = k.devices && !k.devices().empty();
  EXPECT_TRUE(listed);
}

#endif

}  // namespace
}  // namespace tapml

// The cpu backend holds matmuls back so that neighbours share one pool dispatch (q, k and v
// of one input; gate and up with the swiglu of their outputs; a matmul with the residual
// add of its output), for one row (decode) and for many (prefill). These tests run whole call
// sequences without reading between calls (as a model step does) with fusion on and off
// (TAPML_CPU_FUSE=0) and require the very same bits from both, and results close to ref: the
// patterns that fuse, near misses that must not (another input, swapped operands, a fourth matmul,
// an output over a weight of its group), host writes and reads between held calls, a buffer freed
// while a call that reads it is held, in-place calls, widths that are not a multiple of the
// kernels' tile and sizes that do and do not go to the thread pool, all three weight dtypes. Errors
// must come from the call that has them, with the same message, and fused groups show under their
// own names in TAPML_CPU_STATS.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/registry.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/ref/ref_backend.h"
#include "core/error.h"
#include "core/tensor.h"
#include "support/call_program.h"
#include "support/tensors.h"

namespace tapml {
namespace {

using testing::decode_block_of;
using testing::f32_tensor;
using testing::i32_tensor;
using testing::Maker;
using testing::normal;
using testing::Program;
using testing::rope_attrs;
using testing::run;
using testing::View;
using testing::worst_error;

// A cpu backend with `threads` threads and fusion on or off (and TAPML_CPU_STATS when asked).
std::unique_ptr<Backend> open_cpu(bool fuse, int threads, bool stats = false) {
  setenv("TAPML_CPU_FUSE", fuse ? "1" : "0", 1);
  if (stats) setenv("TAPML_CPU_STATS", "1", 1);
  auto b = make_cpu_backend(BackendUri::parse("cpu?threads=" + std::to_string(threads)));
  unsetenv("TAPML_CPU_FUSE");
  unsetenv("TAPML_CPU_STATS");
  return b;
}

// ---- The sequences.

// Small enough that every call runs on the calling thread.
Program decode_block(std::mt19937& gen, DType wt) {
  return decode_block_of(gen, wt, {64, 96, 16, 0, false, true});
}
// Every matmul group large enough for the pool, widths not a multiple of the 4-row tile
// (F = 1030), and the residual adds and swiglu in place.
Program wide_decode_block(std::mt19937& gen, DType wt) {
  return decode_block_of(gen, wt, {260, 1030, 20, 0, true, true});
}
// Widths that are not a multiple of 4 or 8, on the calling thread.
Program odd_decode_block(std::mt19937& gen, DType wt) {
  return decode_block_of(gen, wt, {36, 52, 12, 0, false, true});
}

// The same layer as a prefill of 7 tokens (not a multiple of any tile), in place, and of 3
// tokens with odd widths.
Program wide_prefill_block(std::mt19937& gen, DType wt) {
  return decode_block_of(gen, wt, {260, 1030, 20, 0, true, true, 7});
}
Program odd_prefill_block(std::mt19937& gen, DType wt) {
  return decode_block_of(gen, wt, {36, 52, 12, 0, false, false, 3});
}

// Matmuls of K = 1024 (N * K over the pool's threshold for N >= 64).
Program near_misses(std::mt19937& gen, DType wt) {
  constexpr int64_t D = 1024, N = 70;
  testing::NearMisses n = testing::near_misses_of(gen, wt, D, N, 0);
  Program& p = n.p;
  Maker m{gen, wt, p, 0};
  const View y = n.y, w2 = n.w2, w3 = n.w3, a = n.a, z = n.z;
  // An add in place into the matmul's output.
  p.call(Op::Matmul, {}, {y, w2}, {z});
  p.call(Op::Add, {}, {a, z}, {z});
  // Two rows, the add in place into the residual: held like one row.
  View xx = m.f32({2, D}), yy = m.out({2, N}), rr = m.f32({2, N});
  p.call(Op::Matmul, {}, {xx, w3}, {yy});
  p.call(Op::Add, {}, {yy, rr}, {rr});
  return p;
}

// Outputs written over a weight of their group (f32 weights, so the results are ordinary
// numbers): the calls must run in their order. The swiglu and the add write over the last
// row of a weight, which a group computed range by range would read after the write.
Program outputs_over_weights(std::mt19937& gen, DType) {
  Program p;
  Maker m{gen, DType::F32, p, 0};
  constexpr int64_t D = 512, N = 160;
  View x = m.f32({1, D}), r = m.f32({1, N});
  const int big = p.add(f32_tensor({3 * N, D}, normal(gen, 3 * N * D, 0.05f)));
  auto w = [&](int64_t row) { return View{big, size_t(row * D * 4), DType::F32, {N, D}}; };
  auto row = [&](int64_t at, int64_t n) { return View{big, size_t(at * 4), DType::F32, {1, n}}; };
  View a = m.out({1, N}), b = m.out({1, N}), c = m.out({1, N});
  // q writes into the first row of v's weight.
  p.call(Op::Matmul, {}, {x, w(0)}, {row(2 * N * D, N)});
  p.call(Op::Matmul, {}, {x, w(N)}, {b});
  p.call(Op::Matmul, {}, {x, w(2 * N)}, {c});
  // gate and up, swiglu into up's weight.
  p.call(Op::Matmul, {}, {x, w(0)}, {a});
  p.call(Op::Matmul, {}, {x, w(N)}, {b});
  p.call(Op::Swiglu, {}, {a, b}, {row((2 * N - 1) * D + 5, N)});
  // A residual add into the weight of its own matmul.
  p.call(Op::Matmul, {}, {x, w(N)}, {c});
  p.call(Op::Add, {}, {c, r}, {row((2 * N - 1) * D + 300, N)});
  p.call(Op::Matmul, {}, {x, w(N)}, {a});
  return p;
}

Program host_access_between_held_calls(std::mt19937& gen, DType wt) {
  Program p;
  Maker m{gen, wt, p, 0};
  constexpr int64_t D = 256, N = 300;
  View x = m.f32({1, D}), nw = m.f32({D}), w = m.weight(N, D), w2 = m.weight(N, D);
  View h = m.out({1, D}), a = m.out({1, N}), b = m.out({1, N}), c = m.out({1, N});
  p.call(Op::RmsNorm, {{"eps", 1e-6}}, {x, nw}, {h});
  p.call(Op::Matmul, {}, {h, w}, {a});
  p.write(h.buffer, f32_tensor({1, D}, normal(gen, D, 3.0f)));  // h changes before a is computed
  p.call(Op::Matmul, {}, {h, w}, {b});
  p.call(Op::Matmul, {}, {h, w2}, {c});
  p.read(b.buffer);  // while b and c are held
  p.call(Op::Matmul, {}, {x, w2}, {a});
  p.read(x.buffer);  // a buffer the held call reads
  p.call(Op::Matmul, {}, {x, w}, {a});
  p.read(c.buffer);                  // a buffer no held call uses
  p.call(Op::Add, {}, {a, b}, {b});  // with the held matmul, in place into the residual
  p.call(Op::Matmul, {}, {h, w2}, {c});
  p.write(w2.buffer, f32_tensor({N, D}, normal(gen, N * D, 0.1f), wt));  // the held call's weight
  return p;
}

using Sequence = Program (*)(std::mt19937&, DType);

// ---- The tests, for each weight dtype.

class CpuFusion : public ::testing::TestWithParam<DType> {
 protected:
  // Fused and call by call: the same bits at 1 and 3 threads, and within 2e-4 of ref.
  void check(Sequence make) {
    auto ref = make_ref_backend(BackendUri::parse("ref"));
    std::mt19937 g0(77);
    const auto want = run(*ref, make(g0, GetParam()));
    for (int threads : {1, 3}) {
      auto fused = open_cpu(true, threads), plain = open_cpu(false, threads);
      std::mt19937 g1(77), g2(77);
      const auto a = run(*fused, make(g1, GetParam()));
      const auto b = run(*plain, make(g2, GetParam()));
      ASSERT_EQ(a.size(), want.size());
      for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_TRUE(a[i] == b[i]) << threads << " threads: buffer " << i;
        EXPECT_LT(worst_error(a[i], want[i]), 2e-4) << threads << " threads: buffer " << i;
      }
    }
  }
};

TEST_P(CpuFusion, ADecodeBlockIsBitForBitCallByCall) { check(decode_block); }
TEST_P(CpuFusion, AWideDecodeBlockInPlaceIsBitForBitCallByCall) { check(wide_decode_block); }
TEST_P(CpuFusion, ADecodeBlockOfOddWidthsIsBitForBitCallByCall) { check(odd_decode_block); }
TEST_P(CpuFusion, AWidePrefillBlockInPlaceIsBitForBitCallByCall) { check(wide_prefill_block); }
TEST_P(CpuFusion, APrefillBlockOfOddWidthsIsBitForBitCallByCall) { check(odd_prefill_block); }
TEST_P(CpuFusion, NearMissesStillMatch) { check(near_misses); }
TEST_P(CpuFusion, OutputsOverWeightsOfTheirGroupKeepTheCallOrder) { check(outputs_over_weights); }
TEST_P(CpuFusion, HostAccessBetweenHeldCallsIsOrdered) { check(host_access_between_held_calls); }

INSTANTIATE_TEST_SUITE_P(WeightTypes, CpuFusion,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// A cpu backend at 2 threads with x [1, K] and w [N, K] written to buffers of their own and
// a buffer for the matmul's output y [1, N].
struct MatmulBuffers {
  std::unique_ptr<Backend> backend;
  DeviceTensor x, w, y;
  MatmulBuffers(bool fuse, const Tensor& xt, const Tensor& wt) : backend(open_cpu(fuse, 2)) {
    const int64_t N = wt.shape()[0];
    auto load = [&](const Tensor& t) {
      const BufferId id = backend->alloc(t.nbytes());
      backend->write(id, 0, t.bytes(), t.nbytes());
      return DeviceTensor{id, 0, t.dtype(), t.shape()};
    };
    x = load(xt);
    w = load(wt);
    y = {backend->alloc(size_t(N) * 4), 0, DType::F32, {1, N}};
  }
};

// A held matmul whose weight is freed and its memory handed out again (and overwritten)
// before anything reads the matmul's output: the matmul runs before the free.
TEST(CpuFusionHeld, AFreedWeightIsReadBeforeItGoes) {
  std::mt19937 gen(3);
  constexpr int64_t K = 256, N = 300;
  const Tensor x = f32_tensor({1, K}, normal(gen, K));
  const Tensor w = f32_tensor({N, K}, normal(gen, N * K, 0.1f));
  std::vector<float> got[2];
  for (bool fuse : {true, false}) {
    MatmulBuffers m(fuse, x, w);
    Backend* b = m.backend.get();
    const BufferId bw = m.w.buffer, by = m.y.buffer;
    b->run({Op::Matmul, {}, {m.x, m.w}, {m.y}, "test"});
    b->free(bw);
    const BufferId again = b->alloc(w.nbytes());
    const std::vector<std::byte> zeros(w.nbytes());
    b->write(again, 0, zeros.data(), zeros.size());
    got[fuse].resize(N);
    b->read(by, 0, got[fuse].data(), N * 4);
  }
  EXPECT_EQ(got[0], got[1]);
  EXPECT_NE(got[1][0], 0.0f);
}

// A call that fails its checks throws from its own run(), with the message it has call by
// call, while a matmul is held; the held matmul's result is still there afterwards.
TEST(CpuFusionHeld, ErrorsComeFromTheCallThatHasThem) {
  std::mt19937 gen(4);
  constexpr int64_t K = 64, N = 40;
  const Tensor x = f32_tensor({1, K}, normal(gen, K));
  const Tensor w = f32_tensor({N, K}, normal(gen, N * K, 0.1f));
  std::string message[2];
  std::vector<float> y[2];
  for (bool fuse : {true, false}) {
    MatmulBuffers m(fuse, x, w);
    Backend* b = m.backend.get();
    const DeviceTensor &tx = m.x, &tw = m.w;
    const BufferId by = m.y.buffer;
    b->run({Op::Matmul, {}, {tx, tw}, {m.y}, "test"});
    // The second matmul's output lies past the end of its buffer.
    try {
      b->run({Op::Matmul, {}, {tx, tw}, {{by, 8, DType::F32, {1, N}}}, "test"});
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      message[fuse] = e.what();
    }
    y[fuse].resize(N);
    b->read(by, 0, y[fuse].data(), N * 4);
  }
  EXPECT_EQ(message[0], message[1]);
  EXPECT_NE(message[1].find("lies outside buffer"), std::string::npos) << message[1];
  EXPECT_EQ(y[0], y[1]);
}

// With TAPML_CPU_STATS the fused groups of a decode step are counted under their own names,
// and the step takes fewer pool dispatches.
TEST(CpuFusionHeld, StatsNameTheFusedGroups) {
  std::string log[2];
  for (bool fuse : {true, false}) {
    auto b = open_cpu(fuse, 2, true);
    std::mt19937 gen(6);
    run(*b, wide_decode_block(gen, DType::F16));
    ::testing::internal::CaptureStderr();
    b.reset();
    log[fuse] = ::testing::internal::GetCapturedStderr();
  }
  for (const char* name : {"matmul x3 (1 row)", "matmul x2+swiglu (1 row)", "matmul+add (1 row)"}) {
    EXPECT_NE(log[1].find(name), std::string::npos) << name << " in\n" << log[1];
    EXPECT_EQ(log[0].find(name), std::string::npos) << name << " in\n" << log[0];
  }
  auto dispatches = [](const std::string& s) {
    const size_t at = s.find(" pool dispatches");
    EXPECT_NE(at, std::string::npos) << s;
    const size_t from = s.rfind(' ', at - 1) + 1;
    return std::stoi(s.substr(from, at - from));
  };
  // Call by call q, o, gate, up and down go to the pool (k and v are too small); fused q/k/v,
  // o+add, gate/up+swiglu and down+add.
  EXPECT_EQ(dispatches(log[0]), 5);
  EXPECT_EQ(dispatches(log[1]), 4);
}

// A prefill's groups too, under names without "(1 row)".
TEST(CpuFusionHeld, StatsNameThePrefillGroups) {
  auto b = open_cpu(true, 2, true);
  std::mt19937 gen(6);
  run(*b, wide_prefill_block(gen, DType::F32));
  ::testing::internal::CaptureStderr();
  b.reset();
  const std::string log = ::testing::internal::GetCapturedStderr();
  for (const char* name : {"matmul x3 ", "matmul x2+swiglu ", "matmul+add "})
    EXPECT_NE(log.find(name), std::string::npos) << name << " in\n" << log;
  EXPECT_EQ(log.find("(1 row)"), std::string::npos) << log;
  EXPECT_EQ(log.find("  swiglu "), std::string::npos) << log;
}

}  // namespace
}  // namespace tapml

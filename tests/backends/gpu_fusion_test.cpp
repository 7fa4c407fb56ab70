// The opencl and vulkan backends hold decode calls back and launch neighbours as one kernel
// (rmsnorm into the matmuls of its output, q/k/v matmuls together, gate/up with swiglu, a
// matmul with its residual add, rope of q and k together; on vulkan also gate/up/swiglu with
// the down projection and residual add after them), and vulkan records a pipeline
// barrier only where a dispatch depends on an earlier one. These tests run whole call
// sequences without reading between calls (as a model step does) on each backend and on ref
// and compare every buffer afterwards: the patterns that fuse, the near-misses that must not
// (another input, the wrong operand order, a fourth matmul, overlapping outputs), host writes
// between held calls, in-place calls and views at offsets of one buffer, and all three weight
// dtypes. With fusion off (TAPML_OPENCL_FUSE=0, TAPML_VULKAN_FUSE=0) the same sequences run
// call by call; both must match ref. On vulkan they also run under the Khronos validation
// layer's synchronization checks, which report any access that a left-out barrier leaves
// unordered (lavapipe runs dispatches one at a time, so results alone cannot show that).
// A backend absent from the build or the machine skips, saying why.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "backend/registry.h"
#include "backends/ref/ref_backend.h"
#include "core/tensor.h"
#include "support/call_program.h"
#include "support/tensors.h"
#ifdef TAPML_WITH_OPENCL
#include "backends/opencl/opencl_backend.h"
#endif
#ifdef TAPML_WITH_VULKAN
#include <vulkan/vulkan.h>

#include "backends/vulkan/vulkan_backend.h"
#endif

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

// Every buffer of p run on `b` within 2e-4 of ref's.
void expect_matches_ref(Backend& b, const Program& p, const std::string& what) {
  auto ref = make_ref_backend(BackendUri::parse("ref"));
  const auto want = run(*ref, p), got = run(b, p);
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_LT(worst_error(got[i], want[i]), 2e-4) << what << ": buffer " << i;
}

// ---- The sequences. D and F: model and feed-forward width (multiples of 8).
constexpr int64_t D = 64, F = 96;

Program decode_block(std::mt19937& gen, DType wt) { return decode_block_of(gen, wt, {D, F, 16}); }

// Widths that are not a multiple of 8 and weights 4 bytes off 16-byte alignment: the paths
// that read one weight at a time.
Program odd_decode_block(std::mt19937& gen, DType wt) {
  return decode_block_of(gen, wt, {36, 52, 12, 4});
}

Program near_misses(std::mt19937& gen, DType wt) {
  return testing::near_misses_of(gen, wt, D, 24, 16).p;
}

Program host_write_between_held_calls(std::mt19937& gen, DType wt) {
  Program p;
  Maker m{gen, wt, p};
  View x = m.f32({1, D}), nw = m.f32({D}), w = m.weight(40, D);
  View h = m.out({1, D}), a = m.out({1, 40}), b = m.out({1, 40});
  p.call(Op::RmsNorm, {{"eps", 1e-6}}, {x, nw}, {h});
  p.call(Op::Matmul, {}, {h, w}, {a});                          // held with the norm
  p.write(x.buffer, f32_tensor({1, D}, normal(gen, D, 3.0f)));  // x changes before anything ran
  p.call(Op::RmsNorm, {{"eps", 1e-6}}, {x, nw}, {h});
  p.call(Op::Matmul, {}, {h, w}, {b});
  return p;
}

// Dependencies through views of one buffer at offsets (some not a multiple of 256 bytes): a
// call that needs no barrier (another output), one that overwrites what the one before read,
// one that overwrites half of what the next reads, a host write into a buffer that a pending
// call reads, and kv_store writing its caches in place (two views of one buffer) for
// attention to read.
Program views_and_in_place(std::mt19937& gen, DType wt) {
  Program p;
  Maker m{gen, wt, p};
  View x = m.f32({1, D}), y = m.f32({1, D}), nw = m.f32({D}), w = m.weight(D, D);
  View pos = m.pos(3);
  const int big = p.zeros(4096);
  auto at = [&](size_t offset, int64_t n) { return View{big, offset, DType::F32, {1, n}}; };
  View a = at(0, D), b = at(256, D), c = at(576, D), c_tail = at(576 + 128, D / 2);
  View b_head = at(256, D / 2), e = at(1024, D), d = at(2304, D), f = at(3072, D);
  View g = at(3584, D);
  constexpr int64_t S = 8, C = 32;  // cache rows and width: 2 kv heads of 16
  const int cache = p.add(f32_tensor({2 * S, C}, normal(gen, 2 * S * C)));
  View kc{cache, 0, DType::F32, {S, C}}, vc{cache, S * C * 4, DType::F32, {S, C}};
  View k = at(2304, C), v = at(2304 + C * 4, C);  // the two halves of d
  p.call(Op::Matmul, {}, {x, w}, {a});
  p.call(Op::Matmul, {}, {y, w}, {b});  // independent of the one before
  p.call(Op::Add, {}, {a, b}, {e});
  p.call(Op::RmsNorm, {{"eps", 1e-6}}, {e, nw}, {c});
  p.call(Op::Add, {}, {x, y}, {e});                             // overwrites what rmsnorm read
  p.call(Op::Add, {}, {b_head, b_head}, {c_tail});              // overwrites the second half of c
  p.call(Op::Matmul, {}, {c, w}, {d});                          // reads all of c
  p.write(y.buffer, f32_tensor({1, D}, normal(gen, D, 2.0f)));  // add(x, y) above read y
  p.call(Op::Add, {}, {y, e}, {a});
  p.call(Op::KvStore, {}, {kc, vc, k, v, pos}, {kc, vc});
  const View k_used{cache, 0, DType::F32, {4, C}}, v_used{cache, S * C * 4, DType::F32, {4, C}};
  p.call(Op::Attention,
         {{"n_heads", 4.0}, {"n_kv_heads", 2.0}, {"head_dim", 16.0}, {"scale", 0.25}},
         {a, k_used, v_used}, {f});
  p.call(Op::Rope, rope_attrs(4), {f, pos}, {b});
  p.call(Op::Rope, rope_attrs(4), {d, pos}, {e});  // paired with the one before
  p.call(Op::Mul, {}, {b, e}, {g});
  return p;
}

// A decode step's rope q, rope k, kv_store and attention (held and launched as one where the
// backend can) in the shapes that change its paths: grouped heads, partial and neox rope with
// frequency factors, a window, a softcap, the first token alone, more keys than a work-group
// has items; and near misses that must run call by call: rope at another position than
// kv_store, attention over fewer rows than were stored, two query rows.
struct ChainShape {
  int H, KV, hd, rd, pairing, P;
  double window, softcap;
  bool factors;
  int rope_pos = -1;  // >= 0: rope's position, not P - 1
  int rows = 0;       // > 0: attention reads this many cache rows, not P
  int T = 1;          // query rows
};

void attention_chain(Maker& m, const ChainShape& c) {
  Program& p = m.p;
  const int64_t Q = int64_t(c.H) * c.hd, C = int64_t(c.KV) * c.hd, S = c.P + 3;
  const int pos0 = c.P - c.T;
  View q = m.f32({c.T, Q}), k = m.f32({c.T, C}), v = m.f32({c.T, C});
  View kc = m.f32({S, C}), vc = m.f32({S, C});
  View kv_pos = m.pos(pos0);
  std::vector<int32_t> rp(size_t(c.T));
  for (int t = 0; t < c.T; ++t) rp[size_t(t)] = (c.rope_pos >= 0 ? c.rope_pos : pos0) + t;
  View rope_pos{p.add(i32_tensor({c.T}, rp)), 0, DType::I32, {c.T}};
  View qr = m.out({c.T, Q}), kr = m.out({c.T, C}), o = m.out({c.T, Q});
  auto rope = [&](int heads) {
    return Attrs{{"n_heads", double(heads)},
                 {"head_dim", double(c.hd)},
                 {"rope_dim", double(c.rd)},
                 {"base", 10000.0},
                 {"pairing", double(c.pairing)}};
  };
  const Attrs rq = rope(c.H), rk = rope(c.KV);
  std::vector<View> qin{q, rope_pos}, kin{k, rope_pos};
  if (c.factors) {
    std::vector<float> f(size_t(c.rd / 2));
    for (size_t i = 0; i < f.size(); ++i) f[i] = 1.0f + 0.5f * float(i % 3);
    View fv{p.add(f32_tensor({c.rd / 2}, f)), 0, DType::F32, {c.rd / 2}};
    qin.push_back(fv);
    kin.push_back(fv);
  }
  p.call(Op::Rope, rq, qin, {qr});
  p.call(Op::Rope, rk, kin, {kr});
  p.call(Op::KvStore, {}, {kc, vc, kr, v, kv_pos}, {kc, vc});
  const int rows = c.rows > 0 ? c.rows : c.P;
  Attrs aa{{"n_heads", double(c.H)},
           {"n_kv_heads", double(c.KV)},
           {"head_dim", double(c.hd)},
           {"scale", 1.0 / std::sqrt(double(c.hd))}};
  if (c.window > 0) aa.set("window", c.window);
  if (c.softcap > 0) aa.set("softcap", c.softcap);
  p.call(Op::Attention, aa,
         {qr, View{kc.buffer, 0, DType::F32, {rows, C}}, View{vc.buffer, 0, DType::F32, {rows, C}}},
         {o});
}

Program attention_chains(std::mt19937& gen, DType wt) {
  Program p;
  Maker m{gen, wt, p};
  const ChainShape shapes[] = {
      {4, 2, 16, 16, 0, 6, 0, 0, false},
      {4, 1, 32, 16, 1, 9, 3, 0, true},
      {2, 2, 8, 8, 0, 1, 0, 5.0, true},
      {4, 2, 16, 16, 0, 300, 0, 0, false},
      {4, 2, 16, 16, 0, 7, 0, 0, false, 4},      // rope at 4, kv_store at 6
      {4, 2, 16, 16, 0, 7, 0, 0, false, -1, 6},  // attention reads 6 of 7 rows
      {4, 2, 16, 16, 0, 7, 0, 0, false, -1, 0, 2},
  };
  for (const ChainShape& c : shapes) attention_chain(m, c);
  return p;
}

// A chain followed by its output projection and the residual add (launched as one where the
// backend takes them in: each head's share of the projection, summed by the last group), and
// the near misses that must not be: a projection followed by something else, a matmul of
// another input, a residual that the chain itself writes, a head size the projection's loads
// do not fit.
Program projected_chains(std::mt19937& gen, DType wt) {
  Program p;
  Maker m{gen, wt, p};
  enum Tail { Fresh, Swapped, NotAnAdd, OtherInput, ResidualWritten };
  struct Case {
    int H, KV, hd, P;
    Tail tail;
  };
  const Case cases[] = {{4, 2, 16, 6, Fresh},      {8, 2, 8, 40, Fresh},
                        {4, 1, 16, 3, Swapped},    {4, 2, 16, 5, NotAnAdd},
                        {4, 2, 16, 5, OtherInput}, {4, 2, 16, 5, ResidualWritten},
                        {3, 1, 12, 4, Fresh}};
  for (const Case& c : cases) {
    const int64_t Q = int64_t(c.H) * c.hd, C = int64_t(c.KV) * c.hd, D = Q;
    View q = m.f32({1, Q}), k = m.f32({1, C}), v = m.f32({1, C});
    View kc = m.f32({c.P + 2, C}), vc = m.f32({c.P + 2, C}), pos = m.pos(c.P - 1);
    View qr = m.out({1, Q}), kr = m.out({1, C}), att = m.out({1, Q});
    View wo = m.weight(D, Q), x = m.f32({1, D}), y = m.out({1, D}), out = m.out({1, D});
    p.call(Op::Rope, rope_attrs(c.H, c.hd), {q, pos}, {qr});
    p.call(Op::Rope, rope_attrs(c.KV, c.hd), {k, pos}, {kr});
    p.call(Op::KvStore, {}, {kc, vc, kr, v, pos}, {kc, vc});
    p.call(Op::Attention,
           {{"n_heads", double(c.H)},
            {"n_kv_heads", double(c.KV)},
            {"head_dim", double(c.hd)},
            {"scale", 1.0 / std::sqrt(double(c.hd))}},
           {qr, View{kc.buffer, 0, DType::F32, {c.P, C}}, View{vc.buffer, 0, DType::F32, {c.P, C}}},
           {att});
    p.call(Op::Matmul, {}, {c.tail == OtherInput ? x : att, wo}, {y});
    switch (c.tail) {
      case NotAnAdd:
        p.call(Op::Mul, {}, {y, x}, {out});
        break;
      case Swapped:
        p.call(Op::Add, {}, {y, x}, {out});
        break;
      case ResidualWritten:
        p.call(Op::Add, {}, {y, qr}, {out});
        break;
      default:
        p.call(Op::Add, {}, {x, y}, {out});
    }
  }
  return p;
}

// A feed-forward block: gate, up and swiglu (after their norm or not), the down projection of
// the swiglu's output and the residual add (launched as one where the backend takes them in:
// each workgroup's slice of hidden rows times those columns of the down weight, summed by the
// last workgroup), in widths that are and are not a multiple of 8 or of a workgroup's slice,
// weights on and off 16-byte alignment; and the near misses that must not be: a residual that
// the swiglu wrote, or the norm, a down projection of another input, a projection followed
// by something else. kFfnBlocksFused of them fuse.
enum FfnTail { Fresh, ResidualFirst, NotAnAdd, OtherInput, ResidualIsSwiglu, ResidualIsNorm };
struct FfnCase {
  int64_t D, F;
  size_t front;
  FfnTail tail;
  bool norm = true;
};
constexpr FfnCase kFfnCases[] = {
    {64, 200, 16, Fresh},            // F a multiple of 8, not of a slice
    {37, 52, 16, Fresh},             // every weight read one at a time
    {72, 520, 4, ResidualFirst},     // weights 4 bytes off 16-byte alignment
    {48, 96, 16, Fresh, false},      // gate and up of a row without its norm
    {136, 264, 16, Fresh},           // more rows of D than a workgroup has invocations
    {64, 64, 16, ResidualIsSwiglu},  // near misses from here on
    {64, 96, 16, ResidualIsNorm},
    {64, 96, 16, OtherInput},
    {64, 96, 16, NotAnAdd},
};
constexpr int kFfnBlocksFused = 5;

// summed: where given, the buffers of the down projections' outputs and the adds'.
Program ffn_blocks_of(std::mt19937& gen, DType wt, std::vector<int>* summed) {
  Program p;
  for (const FfnCase& c : kFfnCases) {
    Maker m{gen, wt, p, c.front};
    View x = m.f32({1, c.D}), nw = m.f32({c.D});
    View wg = m.weight(c.F, c.D), wu = m.weight(c.F, c.D), wd = m.weight(c.D, c.F);
    View h = m.out({1, c.D}), g = m.out({1, c.F}), u = m.out({1, c.F}), s = m.out({1, c.F});
    View y = m.out({1, c.D}), out = m.out({1, c.D});
    if (summed) summed->insert(summed->end(), {y.buffer, out.buffer});
    if (c.norm) p.call(Op::RmsNorm, {{"eps", 1e-5}}, {x, nw}, {h});
    p.call(Op::Matmul, {}, {c.norm ? h : x, wg}, {g});
    p.call(Op::Matmul, {}, {c.norm ? h : x, wu}, {u});
    p.call(Op::Swiglu, {}, {g, u}, {s});
    p.call(Op::Matmul, {}, {c.tail == OtherInput ? g : s, wd}, {y});
    switch (c.tail) {
      case NotAnAdd:
        p.call(Op::Mul, {}, {y, x}, {out});
        break;
      case ResidualFirst:
        p.call(Op::Add, {}, {x, y}, {out});
        break;
      case ResidualIsSwiglu:
        p.call(Op::Add, {}, {y, s}, {out});
        break;
      case ResidualIsNorm:
        p.call(Op::Add, {}, {y, h}, {out});
        break;
      default:
        p.call(Op::Add, {}, {y, x}, {out});
    }
  }
  return p;
}
Program ffn_blocks(std::mt19937& gen, DType wt) { return ffn_blocks_of(gen, wt, nullptr); }

using Sequence = Program (*)(std::mt19937&, DType);
const std::pair<const char*, Sequence> kSequences[] = {
    {"decode block", decode_block},
    {"decode block of odd widths", odd_decode_block},
    {"near misses", near_misses},
    {"write between held calls", host_write_between_held_calls},
    {"views and in-place calls", views_and_in_place},
    {"attention chains", attention_chains},
    {"attention chains with their projection", projected_chains},
    {"feed-forward blocks with their down projection", ffn_blocks},
};

// ---- The backends.

// A fresh backend of `kind` with fusion on or off, or null with the reason in *why: "opencl",
// "vulkan", or "vulkan_team32": vulkan with gemv_fused shaped as on GPUs (a team of 32 per
// row, one row per team), whatever the device.
std::unique_ptr<Backend> open_gpu(std::string kind, bool fuse, std::string* why) {
  const std::string env = kind == "opencl" ? "TAPML_OPENCL_FUSE" : "TAPML_VULKAN_FUSE";
  setenv(env.c_str(), fuse ? "1" : "0", 1);
  if (kind == "vulkan_team32") {
    setenv("TAPML_VULKAN_GEMV", "32,1", 1);
    kind = "vulkan";
  }
  std::unique_ptr<Backend> b;
  try {
#ifdef TAPML_WITH_OPENCL
    if (kind == "opencl") b = make_opencl_backend(BackendUri::parse("opencl"));
#endif
#ifdef TAPML_WITH_VULKAN
    if (kind == "vulkan") b = make_vulkan_backend(BackendUri::parse("vulkan"));
#endif
    if (!b)
      *why = "built without " + kind + " (TAPML_WITH_" +
             (kind == "opencl" ? std::string("OPENCL") : std::string("VULKAN")) + " is off)";
  } catch (const std::exception& e) {
    *why = "no " + kind + " device: " + e.what();
  }
  unsetenv(env.c_str());
  unsetenv("TAPML_VULKAN_GEMV");
  return b;
}

// One backend per kind and fusion setting, opened on first use and kept for the binary.
Backend* gpu(const std::string& kind, bool fuse, std::string* why) {
  static std::map<std::pair<std::string, bool>, std::pair<std::unique_ptr<Backend>, std::string> >
      open;
  auto key = std::make_pair(kind, fuse);
  auto it = open.find(key);
  if (it == open.end()) {
    std::string reason;
    auto b = open_gpu(kind, fuse, &reason);
    it = open.emplace(key, std::make_pair(std::move(b), reason)).first;
  }
  *why = it->second.second;
  return it->second.first.get();
}

class GpuFusion : public ::testing::TestWithParam<std::tuple<const char*, DType> > {
 protected:
  void check(Sequence make, const std::string& what) {
    const std::string kind = std::get<0>(GetParam());
    std::string why;
    Backend* fused = gpu(kind, true, &why);
    if (!fused) GTEST_SKIP() << why;
    Backend* plain = gpu(kind, false, &why);
    ASSERT_NE(plain, nullptr) << why;
    for (Backend* b : {fused, plain}) {
      std::mt19937 gen(77);
      SCOPED_TRACE(b == fused ? "fused" : "call by call");
      expect_matches_ref(*b, make(gen, std::get<1>(GetParam())), what);
    }
  }
};

TEST_P(GpuFusion, ADecodeBlockMatchesRef) { check(decode_block, "decode block"); }
TEST_P(GpuFusion, ADecodeBlockOfOddWidthsMatchesRef) {
  check(odd_decode_block, "decode block of odd widths");
}
TEST_P(GpuFusion, NearMissesRunUnfusedAndStillMatch) { check(near_misses, "near misses"); }
TEST_P(GpuFusion, AHostWriteBetweenHeldCallsIsOrdered) {
  check(host_write_between_held_calls, "write between held calls");
}
TEST_P(GpuFusion, ViewsAndInPlaceCallsKeepTheirOrder) {
  check(views_and_in_place, "views and in-place calls");
}
TEST_P(GpuFusion, AttentionChainsWithTheirProjectionMatchRef) {
  check(projected_chains, "attention chains with their projection");
}
TEST_P(GpuFusion, FeedForwardBlocksWithTheirDownProjectionMatchRef) {
  check(ffn_blocks, "feed-forward blocks with their down projection");
}
// Held as one launch, the chain gives the very bits of its calls run one by one.
TEST_P(GpuFusion, AttentionChainsMatchRefAndTheirCallsBitForBit) {
  check(attention_chains, "attention chains");
  const std::string kind = std::get<0>(GetParam());
  std::string why;
  Backend* fused = gpu(kind, true, &why);
  Backend* plain = gpu(kind, false, &why);
  if (!fused || !plain) GTEST_SKIP() << why;
  std::mt19937 g1(5), g2(5);
  const auto a = run(*fused, attention_chains(g1, DType::F32));
  const auto b = run(*plain, attention_chains(g2, DType::F32));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i] == b[i]) << "buffer " << i;
}

INSTANTIATE_TEST_SUITE_P(BackendsAndWeightTypes, GpuFusion,
                         ::testing::Combine(::testing::Values("opencl", "vulkan", "vulkan_team32"),
                                            ::testing::Values(DType::F32, DType::F16, DType::BF16)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + "_" +
                                  std::string(dtype_name(std::get<1>(info.param)));
                         });

// ---- Vulkan's dispatch counts.

#ifdef TAPML_WITH_VULKAN
// The dispatches p takes on a fresh vulkan backend of `kind` (open_gpu's) with fusion on and
// TAPML_VULKAN_FFN_MAX=ffn_max (null: the default), as TAPML_VULKAN_STATS=1 reports them when
// the backend goes (it reads the variable then); -1 with the reason in *why when there is no
// such backend.
int vulkan_dispatches(const std::string& kind, Sequence make, const char* ffn_max,
                      std::string* why) {
  if (ffn_max) setenv("TAPML_VULKAN_FFN_MAX", ffn_max, 1);
  auto b = open_gpu(kind, true, why);
  unsetenv("TAPML_VULKAN_FFN_MAX");
  if (!b) return -1;
  std::mt19937 gen(3);
  run(*b, make(gen, DType::F16));
  setenv("TAPML_VULKAN_STATS", "1", 1);
  ::testing::internal::CaptureStderr();
  b.reset();
  const std::string log = ::testing::internal::GetCapturedStderr();
  unsetenv("TAPML_VULKAN_STATS");
  const size_t at = log.find(" dispatches (");
  if (at == std::string::npos) {
    ADD_FAILURE() << "no dispatch count in:\n" << log;
    return -1;
  }
  const size_t from = log.rfind(' ', at - 1) + 1;
  return std::stoi(log.substr(from, at - from));
}
#endif

// Each feed-forward block whose down projection and residual add fit is one dispatch fewer
// than with them kept out (TAPML_VULKAN_FFN_MAX=0): the decode blocks' and those of
// ffn_blocks that are not near misses; sequences whose blocks all miss take as many either
// way. GPU-shaped gemv_fused (vulkan_team32) takes other slices, so it is counted too.
TEST(GpuFusion, VulkanFeedForwardBlocksTakeOneDispatchFewer) {
#ifndef TAPML_WITH_VULKAN
  GTEST_SKIP() << "built without vulkan (TAPML_WITH_VULKAN is off)";
#else
  const std::tuple<const char*, Sequence, int> cases[] = {
      {"decode block", decode_block, 1},
      {"decode block of odd widths", odd_decode_block, 1},
      {"feed-forward blocks", ffn_blocks, kFfnBlocksFused},
      {"near misses", near_misses, 0},
      {"attention chains with their projection", projected_chains, 0},
  };
  for (const char* kind : {"vulkan", "vulkan_team32"}) {
    for (const auto& [what, make, fewer] : cases) {
      SCOPED_TRACE(std::string(kind) + ": " + what);
      std::string why;
      const int fused = vulkan_dispatches(kind, make, nullptr, &why);
      if (fused < 0) GTEST_SKIP() << why;
      const int kept_out = vulkan_dispatches(kind, make, "0", &why);
      EXPECT_EQ(kept_out - fused, fewer) << fused << " dispatches, " << kept_out << " without";
    }
  }
#endif
}

// The down projection and add taken in change only the order of the down projection's sums:
// every other output (the norm, gate, up and swiglu, computed as the swiglu group computes
// them alone) is the same bits as with them kept out, and the sums stay within 2e-4.
TEST(GpuFusion, VulkanFeedForwardBlocksChangeOnlyTheDownSums) {
#ifndef TAPML_WITH_VULKAN
  GTEST_SKIP() << "built without vulkan (TAPML_WITH_VULKAN is off)";
#else
  for (const char* kind : {"vulkan", "vulkan_team32"}) {
    for (DType wt : {DType::F32, DType::BF16}) {
      SCOPED_TRACE(std::string(kind) + " " + std::string(dtype_name(wt)));
      std::vector<std::vector<std::byte> > got[2];
      std::vector<int> summed;
      for (int kept_out : {0, 1}) {
        std::string why;
        if (kept_out) setenv("TAPML_VULKAN_FFN_MAX", "0", 1);
        auto b = open_gpu(kind, true, &why);
        unsetenv("TAPML_VULKAN_FFN_MAX");
        if (!b) GTEST_SKIP() << why;
        std::mt19937 gen(9);
        summed.clear();
        got[kept_out] = run(*b, ffn_blocks_of(gen, wt, &summed));
      }
      ASSERT_EQ(got[0].size(), got[1].size());
      for (size_t i = 0; i < got[0].size(); ++i) {
        if (std::find(summed.begin(), summed.end(), int(i)) != summed.end())
          EXPECT_LT(worst_error(got[0][i], got[1][i]), 2e-4) << "buffer " << i;
        else
          EXPECT_TRUE(got[0][i] == got[1][i]) << "buffer " << i;
      }
    }
  }
#endif
}

// ---- Vulkan under the validation layer's synchronization checks.

#ifdef TAPML_WITH_VULKAN
bool has_validation_layer() {
  uint32_t n = 0;
  if (vkEnumerateInstanceLayerProperties(&n, nullptr) != VK_SUCCESS) return false;
  std::vector<VkLayerProperties> layers(n);
  if (vkEnumerateInstanceLayerProperties(&n, layers.data()) != VK_SUCCESS) return false;
  for (const VkLayerProperties& l : layers)
    if (std::string(l.layerName) == "VK_LAYER_KHRONOS_validation") return true;
  return false;
}
#endif

// Every sequence on vulkan, fused and call by call, with VK_LAYER_KHRONOS_validation and its
// synchronization validation on: the layer logs each read or write that no barrier orders
// after a conflicting earlier one, which is what a barrier left out where it was needed
// would be. The log must have no error, and the results must still match ref.
TEST(GpuFusion, VulkanBarriersPassSynchronizationValidation) {
#ifndef TAPML_WITH_VULKAN
  GTEST_SKIP() << "built without vulkan (TAPML_WITH_VULKAN is off)";
#else
  if (!has_validation_layer())
    GTEST_SKIP() << "VK_LAYER_KHRONOS_validation is not installed (Debian: "
                    "vulkan-validationlayers)";
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tapml-sync-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::filesystem::path log = dir / "validation.log";
  {
    std::ofstream settings(dir / "vk_layer_settings.txt");
    settings << "khronos_validation.enables = "
                "VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT\n"
             << "khronos_validation.debug_action = VK_DBG_LAYER_ACTION_LOG_MSG\n"
             << "khronos_validation.report_flags = error\n"
             << "khronos_validation.log_filename = " << log.string() << "\n";
  }
  setenv("VK_INSTANCE_LAYERS", "VK_LAYER_KHRONOS_validation", 1);
  setenv("VK_LAYER_SETTINGS_PATH", (dir / "vk_layer_settings.txt").c_str(), 1);
  std::string why;
  auto fused = open_gpu("vulkan", true, &why);
  auto plain = open_gpu("vulkan", false, &why);
  unsetenv("VK_INSTANCE_LAYERS");
  unsetenv("VK_LAYER_SETTINGS_PATH");
  if (!fused || !plain) {
    std::filesystem::remove_all(dir);
    GTEST_SKIP() << why;
  }
  for (Backend* b : {fused.get(), plain.get()}) {
    SCOPED_TRACE(b == fused.get() ? "fused" : "call by call");
    for (const auto& [what, make] : kSequences) {
      std::mt19937 gen(5);
      expect_matches_ref(*b, make(gen, DType::F16), what);
    }
  }
  fused.reset();
  plain.reset();
  std::ifstream in(log);
  ASSERT_TRUE(in.good()) << "the validation layer wrote no log at " << log;
  std::string line, errors;
  int n = 0;
  while (std::getline(in, line))
    if (line.find("Validation Error") != std::string::npos && n++ < 5) errors += line + "\n";
  EXPECT_EQ(n, 0) << n << " validation errors, the first:\n" << errors;
  std::filesystem::remove_all(dir);
#endif
}

}  // namespace
}  // namespace tapml

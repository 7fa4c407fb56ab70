// The cpu backend holds one-row matmuls back so that neighbours share one pool dispatch (q,
// k and v of one input; gate and up with the swiglu of their outputs; a matmul with the
// residual add of its output). These tests run whole call sequences without reading between
// calls (as a model step does) with fusion on and off (TAPML_CPU_FUSE=0) and require the very
// same bits from both, and results close to ref: the patterns that fuse, near misses that
// must not (another input, swapped operands, a fourth matmul, an output over a weight of its
// group), host writes and reads between held calls, a buffer freed while a call that reads it
// is held, in-place calls, widths that are not a multiple of the kernels' tile and sizes that
// do and do not go to the thread pool, all three weight dtypes. Errors must come from the
// call that has them, with the same message, and fused groups show under their own names in
// TAPML_CPU_STATS.
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
#include "support/tensors.h"

namespace tapml {
namespace {

using testing::f32_tensor;
using testing::i32_tensor;
using testing::normal;

// A call sequence over numbered buffers: each buffer starts with a host tensor's bytes; a
// step is a call on views of the buffers, a host write into one or a host read of one.
struct View {
  int buffer;
  size_t offset;  // bytes
  DType dtype;
  Shape shape;
};
struct Step {
  Op op = Op::Add;
  Attrs attrs;
  std::vector<View> in, out;
  int write_buffer = -1;  // >= 0: a host write of `data` into this buffer instead of a call
  int read_buffer = -1;   // >= 0: a host read of this buffer instead of a call
  std::vector<std::byte> data;
};
struct Program {
  std::vector<std::vector<std::byte> > buffers;
  std::vector<Step> steps;

  int add(const Tensor& t, size_t extra_front = 0) {
    std::vector<std::byte> b(extra_front + t.nbytes());
    std::memcpy(b.data() + extra_front, t.bytes(), t.nbytes());
    buffers.push_back(std::move(b));
    return int(buffers.size()) - 1;
  }
  int zeros(size_t bytes) {
    buffers.emplace_back(bytes);
    return int(buffers.size()) - 1;
  }
  void call(Op op, Attrs a, std::vector<View> in, std::vector<View> out) {
    Step s;
    s.op = op;
    s.attrs = std::move(a);
    s.in = std::move(in);
    s.out = std::move(out);
    steps.push_back(std::move(s));
  }
  void write(int buffer, const Tensor& t) {
    Step s;
    s.write_buffer = buffer;
    s.data.assign(t.bytes(), t.bytes() + t.nbytes());
    steps.push_back(std::move(s));
  }
  void read(int buffer) {
    Step s;
    s.read_buffer = buffer;
    steps.push_back(std::move(s));
  }
};

// Runs the program and returns what the host reads between calls, then every buffer's final
// bytes.
std::vector<std::vector<std::byte> > run(Backend& b, const Program& p) {
  std::vector<BufferId> ids;
  for (const auto& bytes : p.buffers) {
    ids.push_back(b.alloc(bytes.size()));
    b.write(ids.back(), 0, bytes.data(), bytes.size());
  }
  auto dev = [&](const View& v) {
    return DeviceTensor{ids[size_t(v.buffer)], v.offset, v.dtype, v.shape};
  };
  std::vector<std::vector<std::byte> > out;
  for (const Step& s : p.steps) {
    if (s.write_buffer >= 0) {
      b.write(ids[size_t(s.write_buffer)], 0, s.data.data(), s.data.size());
      continue;
    }
    if (s.read_buffer >= 0) {
      out.emplace_back(p.buffers[size_t(s.read_buffer)].size());
      b.read(ids[size_t(s.read_buffer)], 0, out.back().data(), out.back().size());
      continue;
    }
    OpCall c{s.op, s.attrs, {}, {}, "test"};
    for (const View& v : s.in) c.inputs.push_back(dev(v));
    for (const View& v : s.out) c.outputs.push_back(dev(v));
    b.run(c);
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    out.emplace_back(p.buffers[i].size());
    b.read(ids[i], 0, out.back().data(), out.back().size());
    b.free(ids[i]);
  }
  return out;
}

// The largest |a - e| / max(1, |e|) over the f32 values of a buffer.
double worst_error(const std::vector<std::byte>& got, const std::vector<std::byte>& want) {
  double worst = 0;
  for (size_t i = 0; i + 4 <= want.size(); i += 4) {
    float g, w;
    std::memcpy(&g, got.data() + i, 4);
    std::memcpy(&w, want.data() + i, 4);
    if (std::isnan(w) != std::isnan(g)) return INFINITY;
    if (std::isnan(w)) continue;
    worst = std::max(worst, std::fabs(double(g) - double(w)) / std::max(1.0, std::fabs(double(w))));
  }
  return worst;
}

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

struct Maker {
  std::mt19937& gen;
  DType wtype;
  Program& p;
  View weight(int64_t n, int64_t k) {
    Tensor t = f32_tensor({n, k}, normal(gen, n * k, 0.2f), wtype);
    return {p.add(t), 0, wtype, {n, k}};
  }
  View f32(Shape s, float sd = 1.0f) {
    return {p.add(f32_tensor(s, normal(gen, s.numel(), sd))), 0, DType::F32, s};
  }
  View out(Shape s) { return {p.zeros(size_t(s.numel()) * 4), 0, DType::F32, s}; }
  View pos(int32_t at) { return {p.add(i32_tensor({1}, {at})), 0, DType::I32, {1}}; }
};

Attrs rope_attrs(int heads, int head_dim) {
  return {{"n_heads", heads},
          {"head_dim", head_dim},
          {"rope_dim", head_dim},
          {"base", 10000.0},
          {"pairing", 0.0}};
}

// One layer's decode calls: width D (hd-wide heads: D / hd for q, 2 or 1 for k and v),
// feed-forward width F. in_place: the residual adds write into the residual, and swiglu
// into the gate.
Program decode_block_of(std::mt19937& gen, DType wt, int64_t D, int64_t F, int hd, bool in_place) {
  Program p;
  Maker m{gen, wt, p};
  const int kv_heads = (D / hd) % 2 == 0 ? 2 : 1;
  const int64_t KV = kv_heads * hd;
  View x = m.f32({1, D}), nw = m.f32({D}), nw2 = m.f32({D});
  View wq = m.weight(D, D), wk = m.weight(KV, D), wv = m.weight(KV, D), wo = m.weight(D, D);
  View wg = m.weight(F, D), wu = m.weight(F, D), wd = m.weight(D, F);
  View pos = m.pos(5);
  View kc = m.f32({8, KV}), vc = m.f32({8, KV});  // rows 0..4 cached, 5 stored now
  View h = m.out({1, D}), q = m.out({1, D}), k = m.out({1, KV}), v = m.out({1, KV});
  View qr = m.out({1, D}), kr = m.out({1, KV}), o = m.out({1, D});
  View x2 = in_place ? x : m.out({1, D});
  View att = m.out({1, D});
  View h2 = m.out({1, D}), g = m.out({1, F}), u = m.out({1, F});
  View s = in_place ? g : m.out({1, F});
  View d = m.out({1, D});
  View x3 = in_place ? x2 : m.out({1, D});
  p.call(Op::RmsNorm, {{"eps", 1e-5}}, {x, nw}, {h});
  p.call(Op::Matmul, {}, {h, wq}, {q});
  p.call(Op::Matmul, {}, {h, wk}, {k});
  p.call(Op::Matmul, {}, {h, wv}, {v});
  p.call(Op::Rope, rope_attrs(int(D / hd), hd), {q, pos}, {qr});
  p.call(Op::Rope, rope_attrs(kv_heads, hd), {k, pos}, {kr});
  p.call(Op::KvStore, {}, {kc, vc, kr, v, pos}, {kc, vc});
  p.call(Op::Attention,
         {{"n_heads", double(D / hd)},
          {"n_kv_heads", double(kv_heads)},
          {"head_dim", double(hd)},
          {"scale", 1.0 / std::sqrt(double(hd))}},
         {qr, View{kc.buffer, 0, DType::F32, {6, KV}}, View{vc.buffer, 0, DType::F32, {6, KV}}},
         {att});
  p.call(Op::Matmul, {}, {att, wo}, {o});
  p.call(Op::Add, {}, {x, o}, {x2});
  p.call(Op::RmsNorm, {{"eps", 1e-5}}, {x2, nw2}, {h2});
  p.call(Op::Matmul, {}, {h2, wg}, {g});
  p.call(Op::Matmul, {}, {h2, wu}, {u});
  p.call(Op::Swiglu, {}, {g, u}, {s});
  p.call(Op::Matmul, {}, {s, wd}, {d});
  p.call(Op::Add, {}, {d, x2}, {x3});  // the matmul's output first this time
  return p;
}

// Small enough that every call runs on the calling thread.
Program decode_block(std::mt19937& gen, DType wt) {
  return decode_block_of(gen, wt, 64, 96, 16, false);
}
// Every matmul group large enough for the pool, widths not a multiple of the 4-row tile
// (F = 1030), and the residual adds and swiglu in place.
Program wide_decode_block(std::mt19937& gen, DType wt) {
  return decode_block_of(gen, wt, 260, 1030, 20, true);
}
// Widths that are not a multiple of 4 or 8, on the calling thread.
Program odd_decode_block(std::mt19937& gen, DType wt) {
  return decode_block_of(gen, wt, 36, 52, 12, false);
}

// Matmuls of K = 1024 (N * K over the pool's threshold for N >= 64).
Program near_misses(std::mt19937& gen, DType wt) {
  Program p;
  Maker m{gen, wt, p};
  constexpr int64_t D = 1024, N = 70;
  View x = m.f32({1, D}), y = m.f32({1, D}), nw = m.f32({D});
  View w1 = m.weight(N, D), w2 = m.weight(N, D), w3 = m.weight(N, D), w4 = m.weight(N, D);
  View h = m.out({1, D}), a = m.out({1, N}), b = m.out({1, N}), c = m.out({1, N});
  View e = m.out({1, N}), s = m.out({1, N}), s2 = m.out({1, N}), z = m.out({1, N});
  // A norm, then a matmul of another input.
  p.call(Op::RmsNorm, {{"eps", 1e-6}}, {x, nw}, {h});
  p.call(Op::Matmul, {}, {y, w1}, {a});
  // Four matmuls of one input: three together, then one more.
  p.call(Op::Matmul, {}, {h, w1}, {a});
  p.call(Op::Matmul, {}, {h, w2}, {b});
  p.call(Op::Matmul, {}, {h, w3}, {c});
  p.call(Op::Matmul, {}, {h, w4}, {e});
  // swiglu with its operands swapped (up, gate): not the fused pattern.
  p.call(Op::Matmul, {}, {x, w1}, {a});
  p.call(Op::Matmul, {}, {x, w2}, {b});
  p.call(Op::Swiglu, {}, {b, a}, {s});
  // gate and up of another input with swiglu: the fused pattern again.
  p.call(Op::Matmul, {}, {y, w3}, {c});
  p.call(Op::Matmul, {}, {y, w4}, {e});
  p.call(Op::Swiglu, {}, {c, e}, {s2});
  // An add of a matmul's output and that matmul's input.
  p.call(Op::Matmul, {}, {s2, View{w1.buffer, w1.offset, w1.dtype, {N, N}}}, {z});
  p.call(Op::Add, {}, {z, s2}, {a});
  // An add in place into the matmul's output.
  p.call(Op::Matmul, {}, {y, w2}, {z});
  p.call(Op::Add, {}, {a, z}, {z});
  // Two rows: not held.
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
  Maker m{gen, DType::F32, p};
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
  Maker m{gen, wt, p};
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
TEST_P(CpuFusion, NearMissesStillMatch) { check(near_misses); }
TEST_P(CpuFusion, OutputsOverWeightsOfTheirGroupKeepTheCallOrder) { check(outputs_over_weights); }
TEST_P(CpuFusion, HostAccessBetweenHeldCallsIsOrdered) { check(host_access_between_held_calls); }

INSTANTIATE_TEST_SUITE_P(WeightTypes, CpuFusion,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// A held matmul whose weight is freed and its memory handed out again (and overwritten)
// before anything reads the matmul's output: the matmul runs before the free.
TEST(CpuFusionHeld, AFreedWeightIsReadBeforeItGoes) {
  std::mt19937 gen(3);
  constexpr int64_t K = 256, N = 300;
  const Tensor x = f32_tensor({1, K}, normal(gen, K));
  const Tensor w = f32_tensor({N, K}, normal(gen, N * K, 0.1f));
  std::vector<float> got[2];
  for (bool fuse : {true, false}) {
    auto b = open_cpu(fuse, 2);
    const BufferId bx = b->alloc(x.nbytes()), bw = b->alloc(w.nbytes()), by = b->alloc(N * 4);
    b->write(bx, 0, x.bytes(), x.nbytes());
    b->write(bw, 0, w.bytes(), w.nbytes());
    b->run({Op::Matmul,
            {},
            {{bx, 0, DType::F32, {1, K}}, {bw, 0, DType::F32, {N, K}}},
            {{by, 0, DType::F32, {1, N}}},
            "test"});
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
    auto b = open_cpu(fuse, 2);
    const BufferId bx = b->alloc(x.nbytes()), bw = b->alloc(w.nbytes()), by = b->alloc(N * 4);
    b->write(bx, 0, x.bytes(), x.nbytes());
    b->write(bw, 0, w.bytes(), w.nbytes());
    const DeviceTensor tx{bx, 0, DType::F32, {1, K}}, tw{bw, 0, DType::F32, {N, K}};
    b->run({Op::Matmul, {}, {tx, tw}, {{by, 0, DType::F32, {1, N}}}, "test"});
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

}  // namespace
}  // namespace tapml

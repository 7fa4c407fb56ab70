// The opencl and vulkan backends hold decode calls back and launch neighbours as one kernel
// (rmsnorm into the matmuls of its output, q/k/v matmuls together, gate/up with swiglu, a
// matmul with its residual add, rope of q and k together), and vulkan records a pipeline
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

using testing::f32_tensor;
using testing::i32_tensor;
using testing::normal;

// A call sequence over numbered buffers: each buffer starts with a host tensor's bytes; a
// step is a call on views of the buffers or a host write into one.
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
    steps.push_back({op, std::move(a), std::move(in), std::move(out), -1, {}});
  }
  void write(int buffer, const Tensor& t) {
    Step s;
    s.write_buffer = buffer;
    s.data.assign(t.bytes(), t.bytes() + t.nbytes());
    steps.push_back(std::move(s));
  }
};

// Runs the program and returns every buffer's final bytes.
std::vector<std::vector<std::byte> > run(Backend& b, const Program& p) {
  std::vector<BufferId> ids;
  for (const auto& bytes : p.buffers) {
    ids.push_back(b.alloc(bytes.size()));
    b.write(ids.back(), 0, bytes.data(), bytes.size());
  }
  auto dev = [&](const View& v) {
    return DeviceTensor{ids[size_t(v.buffer)], v.offset, v.dtype, v.shape};
  };
  for (const Step& s : p.steps) {
    if (s.write_buffer >= 0) {
      b.write(ids[size_t(s.write_buffer)], 0, s.data.data(), s.data.size());
      continue;
    }
    OpCall c{s.op, s.attrs, {}, {}, "test"};
    for (const View& v : s.in) c.inputs.push_back(dev(v));
    for (const View& v : s.out) c.outputs.push_back(dev(v));
    b.run(c);
  }
  std::vector<std::vector<std::byte> > out;
  for (size_t i = 0; i < ids.size(); ++i) {
    out.emplace_back(p.buffers[i].size());
    b.read(ids[i], 0, out.back().data(), out.back().size());
    b.free(ids[i]);
  }
  return out;
}

// The largest |a - e| / max(1, |e|) over the f32 values of every buffer written by a call.
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

// Every buffer of p run on `b` within 2e-4 of ref's.
void expect_matches_ref(Backend& b, const Program& p, const std::string& what) {
  auto ref = make_ref_backend(BackendUri::parse("ref"));
  const auto want = run(*ref, p), got = run(b, p);
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_LT(worst_error(got[i], want[i]), 2e-4) << what << ": buffer " << i;
}

// ---- The sequences. D and F: model and feed-forward width (multiples of 8).
constexpr int64_t D = 64, F = 96;

struct Maker {
  std::mt19937& gen;
  DType wtype;
  Program& p;
  size_t front = 16;  // bytes before each weight: 16 keeps the 16-byte loads of the gemv paths
  View weight(int64_t n, int64_t k) {
    Tensor t = f32_tensor({n, k}, normal(gen, n * k, 0.2f), wtype);
    return {p.add(t, front), front, wtype, {n, k}};
  }
  View f32(Shape s, float sd = 1.0f) {
    return {p.add(f32_tensor(s, normal(gen, s.numel(), sd))), 0, DType::F32, s};
  }
  View out(Shape s) { return {p.zeros(size_t(s.numel()) * 4), 0, DType::F32, s}; }
  View pos(int32_t at) { return {p.add(i32_tensor({1}, {at})), 0, DType::I32, {1}}; }
};

Attrs rope_attrs(int heads, int head_dim = 16) {
  return {{"n_heads", heads},
          {"head_dim", head_dim},
          {"rope_dim", head_dim},
          {"base", 10000.0},
          {"pairing", 0.0}};
}

// One layer's decode calls: width D (hd-wide heads: D / hd for q, 2 or 1 for k and v), feed-forward
// width F, `front` bytes before each weight.
Program decode_block_of(std::mt19937& gen, DType wt, int64_t D, int64_t F, int hd, size_t front) {
  Program p;
  Maker m{gen, wt, p, front};
  const int kv_heads = (D / hd) % 2 == 0 ? 2 : 1;
  const int64_t KV = kv_heads * hd;
  View x = m.f32({1, D}), nw = m.f32({D}), nw2 = m.f32({D});
  View wq = m.weight(D, D), wk = m.weight(KV, D), wv = m.weight(KV, D), wo = m.weight(D, D);
  View wg = m.weight(F, D), wu = m.weight(F, D), wd = m.weight(D, F);
  View pos = m.pos(5);
  View kc = m.f32({8, KV}), vc = m.f32({8, KV});  // rows 0..4 cached, 5 stored now
  View h = m.out({1, D}), q = m.out({1, D}), k = m.out({1, KV}), v = m.out({1, KV});
  View qr = m.out({1, D}), kr = m.out({1, KV}), o = m.out({1, D}), x2 = m.out({1, D});
  View att = m.out({1, D});
  View h2 = m.out({1, D}), g = m.out({1, F}), u = m.out({1, F}), s = m.out({1, F});
  View d = m.out({1, D}), x3 = m.out({1, D});
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
  p.call(Op::Add, {}, {x2, d}, {x3});
  return p;
}

Program decode_block(std::mt19937& gen, DType wt) { return decode_block_of(gen, wt, D, F, 16, 16); }

// Widths that are not a multiple of 8 and weights 4 bytes off 16-byte alignment: the paths
// that read one weight at a time.
Program odd_decode_block(std::mt19937& gen, DType wt) {
  return decode_block_of(gen, wt, 36, 52, 12, 4);
}

Program near_misses(std::mt19937& gen, DType wt) {
  Program p;
  Maker m{gen, wt, p};
  View x = m.f32({1, D}), y = m.f32({1, D}), nw = m.f32({D});
  View w1 = m.weight(24, D), w2 = m.weight(24, D), w3 = m.weight(24, D), w4 = m.weight(24, D);
  View h = m.out({1, D}), a = m.out({1, 24}), b = m.out({1, 24}), c = m.out({1, 24});
  View e = m.out({1, 24}), s = m.out({1, 24}), s2 = m.out({1, 24}), z = m.out({1, 24});
  // A norm, then a matmul of another input: the norm runs alone.
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
  // An add of a matmul's output and a held input of that matmul's group.
  p.call(Op::Matmul, {}, {s2, View{w1.buffer, w1.offset, w1.dtype, {24, 24}}}, {z});
  p.call(Op::Add, {}, {z, s2}, {a});
  return p;
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

using Sequence = Program (*)(std::mt19937&, DType);
const std::pair<const char*, Sequence> kSequences[] = {
    {"decode block", decode_block},
    {"decode block of odd widths", odd_decode_block},
    {"near misses", near_misses},
    {"write between held calls", host_write_between_held_calls},
    {"views and in-place calls", views_and_in_place},
    {"attention chains", attention_chains},
    {"attention chains with their projection", projected_chains},
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

// The opencl backend holds decode calls back and launches neighbours as one kernel (rmsnorm
// into the matmuls of its output, q/k/v matmuls together, gate/up with swiglu, a matmul with
// its residual add, rope of q and k together). These tests run whole call sequences without
// reading between calls (as a model step does) on opencl and on ref and compare every buffer
// afterwards: the patterns that fuse, the near-misses that must not (another input, the
// wrong operand order, a fourth matmul, overlapping outputs), host writes between held
// calls, and all three weight dtypes. With TAPML_OPENCL_FUSE=0 the same sequences run call
// by call; both must match ref.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "backends/ref/ref_backend.h"
#include "core/tensor.h"
#include "support/tensors.h"
#ifdef TAPML_WITH_OPENCL
#include "backends/opencl/opencl_backend.h"
#endif

namespace tapml {
namespace {

#ifndef TAPML_WITH_OPENCL

TEST(OpenClFusion, Skipped) { GTEST_SKIP() << "built without OpenCL (TAPML_WITH_OPENCL is off)"; }

#else

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

std::unique_ptr<Backend> open_opencl(bool fuse, std::string* why) {
  setenv("TAPML_OPENCL_FUSE", fuse ? "1" : "0", 1);
  try {
    auto b = make_opencl_backend(BackendUri::parse("opencl"));
    unsetenv("TAPML_OPENCL_FUSE");
    return b;
  } catch (const std::exception& e) {
    unsetenv("TAPML_OPENCL_FUSE");
    *why = e.what();
    return nullptr;
  }
}

class OpenClFusion : public ::testing::TestWithParam<DType> {
 protected:
  // Runs p on ref and on opencl with and without fusion; every buffer must agree with ref.
  void expect_matches_ref(const Program& p, const std::string& what) {
    std::string why;
    auto fused = open_opencl(true, &why);
    if (!fused) GTEST_SKIP() << "no OpenCL device: " << why;
    auto plain = open_opencl(false, &why);
    auto ref = make_ref_backend(BackendUri::parse("ref"));
    const auto want = run(*ref, p);
    const auto got = run(*fused, p), got_plain = run(*plain, p);
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_LT(worst_error(got[i], want[i]), 2e-4) << what << ": buffer " << i << " (fused)";
      EXPECT_LT(worst_error(got_plain[i], want[i]), 2e-4) << what << ": buffer " << i;
    }
  }

  View weight(Program& p, int64_t n, int64_t k) {
    // 16 bytes in front keep 16-byte alignment (the gemv path) for every dtype.
    Tensor t = f32_tensor({n, k}, normal(gen_, n * k, 0.2f), GetParam());
    return {p.add(t, 16), 16, GetParam(), {n, k}};
  }
  View f32(Program& p, Shape s, float sd = 1.0f) {
    return {p.add(f32_tensor(s, normal(gen_, s.numel(), sd))), 0, DType::F32, s};
  }
  View out(Program& p, Shape s) { return {p.zeros(size_t(s.numel()) * 4), 0, DType::F32, s}; }

  std::mt19937 gen_{77};
};

constexpr int64_t D = 64, F = 96;  // model width and feed-forward width (multiples of 8)

Attrs rope_attrs(int heads) {
  return {
      {"n_heads", heads}, {"head_dim", 16}, {"rope_dim", 16}, {"base", 10000.0}, {"pairing", 0.0}};
}

TEST_P(OpenClFusion, ADecodeBlockMatchesRef) {
  Program p;
  View x = f32(p, {1, D}), nw = f32(p, {D}), nw2 = f32(p, {D});
  View wq = weight(p, D, D), wk = weight(p, 32, D), wv = weight(p, 32, D), wo = weight(p, D, D);
  View wg = weight(p, F, D), wu = weight(p, F, D), wd = weight(p, D, F);
  View pos{p.add(i32_tensor({1}, {5})), 0, DType::I32, {1}};
  View h = out(p, {1, D}), q = out(p, {1, D}), k = out(p, {1, 32}), v = out(p, {1, 32});
  View qr = out(p, {1, D}), kr = out(p, {1, 32}), o = out(p, {1, D}), x2 = out(p, {1, D});
  View h2 = out(p, {1, D}), g = out(p, {1, F}), u = out(p, {1, F}), s = out(p, {1, F});
  View d = out(p, {1, D}), x3 = out(p, {1, D});
  p.call(Op::RmsNorm, {{"eps", 1e-5}}, {x, nw}, {h});
  p.call(Op::Matmul, {}, {h, wq}, {q});
  p.call(Op::Matmul, {}, {h, wk}, {k});
  p.call(Op::Matmul, {}, {h, wv}, {v});
  p.call(Op::Rope, rope_attrs(4), {q, pos}, {qr});
  p.call(Op::Rope, rope_attrs(2), {k, pos}, {kr});
  p.call(Op::Matmul, {}, {qr, wo}, {o});
  p.call(Op::Add, {}, {x, o}, {x2});
  p.call(Op::RmsNorm, {{"eps", 1e-5}}, {x2, nw2}, {h2});
  p.call(Op::Matmul, {}, {h2, wg}, {g});
  p.call(Op::Matmul, {}, {h2, wu}, {u});
  p.call(Op::Swiglu, {}, {g, u}, {s});
  p.call(Op::Matmul, {}, {s, wd}, {d});
  p.call(Op::Add, {}, {x2, d}, {x3});
  expect_matches_ref(p, "decode block");
}

TEST_P(OpenClFusion, NearMissesRunUnfusedAndStillMatch) {
  Program p;
  View x = f32(p, {1, D}), y = f32(p, {1, D}), nw = f32(p, {D});
  View w1 = weight(p, 24, D), w2 = weight(p, 24, D), w3 = weight(p, 24, D), w4 = weight(p, 24, D);
  View h = out(p, {1, D}), a = out(p, {1, 24}), b = out(p, {1, 24}), c = out(p, {1, 24});
  View e = out(p, {1, 24}), s = out(p, {1, 24}), s2 = out(p, {1, 24}), z = out(p, {1, 24});
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
  expect_matches_ref(p, "near misses");
}

TEST_P(OpenClFusion, AHostWriteBetweenHeldCallsIsOrdered) {
  Program p;
  View x = f32(p, {1, D}), nw = f32(p, {D}), w = weight(p, 40, D);
  View h = out(p, {1, D}), a = out(p, {1, 40}), b = out(p, {1, 40});
  p.call(Op::RmsNorm, {{"eps", 1e-6}}, {x, nw}, {h});
  p.call(Op::Matmul, {}, {h, w}, {a});  // held with the norm
  Step overwrite;                       // x changes before anything ran
  overwrite.write_buffer = x.buffer;
  Tensor fresh = f32_tensor({1, D}, normal(gen_, D, 3.0f));
  overwrite.data.assign(fresh.bytes(), fresh.bytes() + fresh.nbytes());
  p.steps.push_back(overwrite);
  p.call(Op::RmsNorm, {{"eps", 1e-6}}, {x, nw}, {h});
  p.call(Op::Matmul, {}, {h, w}, {b});
  expect_matches_ref(p, "write between held calls");
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, OpenClFusion,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

#endif

}  // namespace
}  // namespace tapml

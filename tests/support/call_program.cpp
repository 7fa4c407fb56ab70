#include "support/call_program.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "support/tensors.h"

namespace tapml::testing {

int Program::add(const Tensor& t, size_t extra_front) {
  std::vector<std::byte> b(extra_front + t.nbytes());
  std::memcpy(b.data() + extra_front, t.bytes(), t.nbytes());
  buffers.push_back(std::move(b));
  return int(buffers.size()) - 1;
}

int Program::zeros(size_t bytes) {
  buffers.emplace_back(bytes);
  return int(buffers.size()) - 1;
}

void Program::call(Op op, Attrs a, std::vector<View> in, std::vector<View> out) {
  Step s;
  s.op = op;
  s.attrs = std::move(a);
  s.in = std::move(in);
  s.out = std::move(out);
  steps.push_back(std::move(s));
}

void Program::write(int buffer, const Tensor& t) {
  Step s;
  s.write_buffer = buffer;
  s.data.assign(t.bytes(), t.bytes() + t.nbytes());
  steps.push_back(std::move(s));
}

void Program::read(int buffer) {
  Step s;
  s.read_buffer = buffer;
  steps.push_back(std::move(s));
}

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

View Maker::weight(int64_t n, int64_t k) {
  Tensor t = f32_tensor({n, k}, normal(gen, n * k, 0.2f), wtype);
  return {p.add(t, front), front, wtype, {n, k}};
}
View Maker::f32(Shape s, float sd) {
  return {p.add(f32_tensor(s, normal(gen, s.numel(), sd))), 0, DType::F32, s};
}
View Maker::out(Shape s) { return {p.zeros(size_t(s.numel()) * 4), 0, DType::F32, s}; }
View Maker::pos(int32_t at, int64_t rows) {
  std::vector<int32_t> ids(static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) ids[size_t(i)] = at + int32_t(i);
  return {p.add(i32_tensor({rows}, ids)), 0, DType::I32, {rows}};
}

Attrs rope_attrs(int heads, int head_dim) {
  return {{"n_heads", heads},
          {"head_dim", head_dim},
          {"rope_dim", head_dim},
          {"base", 10000.0},
          {"pairing", 0.0}};
}

Attrs attention_attrs(int64_t heads, int64_t kv_heads, int64_t head_dim) {
  return {{"n_heads", double(heads)},
          {"n_kv_heads", double(kv_heads)},
          {"head_dim", double(head_dim)},
          {"scale", 1.0 / std::sqrt(double(head_dim))}};
}

Program decode_block_of(std::mt19937& gen, DType wt, const BlockShape& b) {
  const int64_t D = b.D, F = b.F;
  const int hd = b.hd;
  Program p;
  Maker m{gen, wt, p, b.front};
  const int kv_heads = (D / hd) % 2 == 0 ? 2 : 1;
  const int64_t KV = kv_heads * hd, T = b.rows;
  View x = m.f32({T, D}), nw = m.f32({D}), nw2 = m.f32({D});
  View wq = m.weight(D, D), wk = m.weight(KV, D), wv = m.weight(KV, D), wo = m.weight(D, D);
  View wg = m.weight(F, D), wu = m.weight(F, D), wd = m.weight(D, F);
  View pos = m.pos(5, T);
  // rows 0..4 cached, 5..4+T stored now
  View kc = m.f32({8 + T, KV}), vc = m.f32({8 + T, KV});
  View h = m.out({T, D}), q = m.out({T, D}), k = m.out({T, KV}), v = m.out({T, KV});
  View qr = m.out({T, D}), kr = m.out({T, KV}), o = m.out({T, D});
  View x2 = b.in_place ? x : m.out({T, D});
  View att = m.out({T, D});
  View h2 = m.out({T, D}), g = m.out({T, F}), u = m.out({T, F});
  View s = b.in_place ? g : m.out({T, F});
  View d = m.out({T, D});
  View x3 = b.in_place ? x2 : m.out({T, D});
  p.call(Op::RmsNorm, {{"eps", 1e-5}}, {x, nw}, {h});
  p.call(Op::Matmul, {}, {h, wq}, {q});
  p.call(Op::Matmul, {}, {h, wk}, {k});
  p.call(Op::Matmul, {}, {h, wv}, {v});
  p.call(Op::Rope, rope_attrs(int(D / hd), hd), {q, pos}, {qr});
  p.call(Op::Rope, rope_attrs(kv_heads, hd), {k, pos}, {kr});
  p.call(Op::KvStore, {}, {kc, vc, kr, v, pos}, {kc, vc});
  p.call(Op::Attention, attention_attrs(D / hd, kv_heads, hd),
         {qr, View{kc.buffer, 0, DType::F32, {5 + T, KV}},
          View{vc.buffer, 0, DType::F32, {5 + T, KV}}},
         {att});
  p.call(Op::Matmul, {}, {att, wo}, {o});
  p.call(Op::Add, {}, {x, o}, {x2});
  p.call(Op::RmsNorm, {{"eps", 1e-5}}, {x2, nw2}, {h2});
  p.call(Op::Matmul, {}, {h2, wg}, {g});
  p.call(Op::Matmul, {}, {h2, wu}, {u});
  p.call(Op::Swiglu, {}, {g, u}, {s});
  p.call(Op::Matmul, {}, {s, wd}, {d});
  if (b.matmul_first)
    p.call(Op::Add, {}, {d, x2}, {x3});
  else
    p.call(Op::Add, {}, {x2, d}, {x3});
  return p;
}

NearMisses near_misses_of(std::mt19937& gen, DType wt, int64_t D, int64_t N, size_t front) {
  NearMisses r;
  Program& p = r.p;
  Maker m{gen, wt, p, front};
  View x = m.f32({1, D}), y = m.f32({1, D}), nw = m.f32({D});
  View w1 = m.weight(N, D), w2 = m.weight(N, D), w3 = m.weight(N, D), w4 = m.weight(N, D);
  View h = m.out({1, D}), a = m.out({1, N}), b = m.out({1, N}), c = m.out({1, N});
  View e = m.out({1, N}), s = m.out({1, N}), s2 = m.out({1, N}), z = m.out({1, N});
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
  p.call(Op::Matmul, {}, {s2, View{w1.buffer, w1.offset, w1.dtype, {N, N}}}, {z});
  p.call(Op::Add, {}, {z, s2}, {a});
  r.x = x, r.y = y, r.w1 = w1, r.w2 = w2, r.w3 = w3, r.w4 = w4, r.a = a, r.z = z;
  return r;
}

}  // namespace tapml::testing

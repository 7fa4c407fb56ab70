// The cpu backend: the catalog's ops on host memory, split over a thread pool and vectorized
// by the kernels in kernels.cpp. This file decodes calls, validates what the catalog cannot
// (token ids, cache positions) and decides how to split the work; the arithmetic lives in
// the kernels. rope is computed in f64 scalar code like ref, so it matches ref exactly.
//
// One-row matmuls are held back (backend/call_fusion.h) so that a decode step's neighbours
// share one pool dispatch: q, k and v of one input over their rows back to back, gate and up
// with the swiglu of their outputs, a matmul with the residual add of its output. Each
// dispatch waits for its slowest thread; a 125M model's decode step made 97, now 61. Every
// row is computed by the same kernel code with the same 4-row tiling as call by call, and
// the epilogues are elementwise, so results are the same bits. TAPML_CPU_FUSE=0 turns
// holding off.
#include "backends/cpu/cpu_backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "backend/call_fusion.h"
#include "backend/host_backend.h"
#include "backends/cpu/kernels.h"
#include "core/error.h"
#include "core/quant.h"
#include "core/thread_pool.h"

namespace tapml {

namespace {

using cpu::WeightType;

std::optional<WeightType> weight_type(DType t) {
  switch (t) {
    case DType::F32:
      return WeightType::F32;
    case DType::F16:
      return WeightType::F16;
    case DType::BF16:
      return WeightType::BF16;
    default:
      return std::nullopt;
  }
}

// Below this much work (roughly: elements touched, or multiply-adds) a call runs on the
// calling thread: a pool dispatch costs about a microsecond, more than such an op.
constexpr int64_t kInlineWork = 64 * 1024;

// Work per thread (multiply-adds) from which a loop is cut into kFinePieces ranges per
// thread: a 125M model's prefill matmuls have millions per thread, its decode GEMVs tens of
// thousands, where the extra claims would cost more than they balance.
constexpr int64_t kLongShare = 1 << 20;
constexpr int kFinePieces = 4;

// Output features per unit of a matmul's split: the kernels' tile height. A split at these
// boundaries gives every row the same tile, and so the same bits, whatever the range.
constexpr int64_t kGroup = 4;

// Output rows per thread from which many-row matmuls take the outer-product kernel (see
// transpose_x).
constexpr int64_t kXtRowsPerThread = 384;

// The key of a call in TAPML_CPU_STATS.
std::string stats_key(const OpCall& c) {
  const bool one_row =
      !c.inputs.empty() && c.inputs[0].shape.rank() >= 2 && c.inputs[0].shape[0] == 1;
  return std::string(op_name(c.op)) + (one_row ? " (1 row)" : "");
}

class CpuBackend final : public HostBackend {
 public:
  CpuBackend(const std::string& uri, int threads)
      : HostBackend({uri, "cpu",
                     "host CPU, " + std::to_string(threads) + " thread" +
                         (threads == 1 ? "" : "s") + ", SIMD " + cpu::simd_target()}),
        pool_(threads) {
    stats_ = std::getenv("TAPML_CPU_STATS") != nullptr;
    const char* fuse = std::getenv("TAPML_CPU_FUSE");
    if (!fuse || std::string_view(fuse) != "0") start_fusion();
    const std::vector<DType> blocks(std::begin(kBlockDTypes), std::end(kBlockDTypes));
    kernels().add(Op::Embedding, this, &CpuBackend::embedding);
    kernels().add(Op::Embedding, this, &CpuBackend::embedding_quant, {blocks, {DType::I32}});
    kernels().add(Op::RmsNorm, this, &CpuBackend::rmsnorm);
    kernels().add(Op::Matmul, this, &CpuBackend::matmul);
    kernels().add(Op::Matmul, this, &CpuBackend::matmul_quant, {{DType::F32}, blocks});
    kernels().add(Op::Rope, this, &CpuBackend::rope, {}, {"freq_factors"});
    kernels().add(Op::KvStore, this, &CpuBackend::kv_store);
    kernels().add(Op::Attention, this, &CpuBackend::attention, {}, {"window", "softcap"});
    kernels().add(Op::Swiglu, this, &CpuBackend::swiglu);
    kernels().add(Op::Add, this, &CpuBackend::add);
    kernels().add(Op::Gelu, this, &CpuBackend::gelu);
    kernels().add(Op::LayerNorm, this, &CpuBackend::layernorm);
    kernels().add(Op::Bias, this, &CpuBackend::bias);
    kernels().add(Op::Mul, this, &CpuBackend::mul);
    kernels().add(Op::Scale, this, &CpuBackend::scale);
    kernels().add(Op::Softcap, this, &CpuBackend::softcap);
    kernels().add(Op::SigmoidGate, this, &CpuBackend::sigmoid_gate);
    kernels().add(Op::MoeRoute, this, &CpuBackend::moe_route);
    kernels().add(Op::MoeFfn, this, &CpuBackend::moe_ffn);
  }

  // HostBackend::run checks the call's tensors against their buffers before this offers it
  // to the fusion, so a call is held only once it has passed those checks, and errors are
  // thrown by the call that has them.
  void execute(const OpCall& c) override {
    if (fusion_ && fusion_->offer(c)) return;
    run_kernel(c);
  }

  // Held calls read and write host memory when they run, so they run before the memory of a
  // buffer they use is written, read or given up.
  void write(BufferId id, size_t offset, const void* src, size_t bytes) override {
    flush_if_held(id);
    HostBackend::write(id, offset, src, bytes);
  }
  void read(BufferId id, size_t offset, void* dst, size_t bytes) override {
    flush_if_held(id);
    HostBackend::read(id, offset, dst, bytes);
  }
  void free(BufferId id) override {
    flush_if_held(id);
    HostBackend::free(id);
  }
  void sync() override {
    if (fusion_) fusion_->flush();
  }

  // TAPML_CPU_STATS=1: each op's (or fused group's) calls and wall time, and the number of
  // pool dispatches, printed when the backend closes.
  ~CpuBackend() override {
    try {
      if (fusion_) fusion_->flush();
    } catch (...) {
    }
    if (!stats_) return;
    double total = 0;
    for (auto& [name, t] : times_) total += t.seconds;
    std::fprintf(stderr, "cpu stats: %.3f s in kernels, %lld pool dispatches\n", total,
                 (long long)dispatches_);
    for (auto& [name, t] : times_)
      std::fprintf(stderr, "  %-24s %8lld calls %9.3f ms %8.2f us/call %5.1f%%\n", name.c_str(),
                   (long long)t.calls, t.seconds * 1e3, t.seconds * 1e6 / double(t.calls),
                   total > 0 ? 100 * t.seconds / total : 0.0);
  }

 private:
  struct OpTime {
    int64_t calls = 0;
    double seconds = 0;
  };
  bool stats_ = false;
  std::map<std::string, OpTime> times_;
  int64_t dispatches_ = 0;

  template <class F>
  void timed(const std::string& key, F&& fn) {
    if (!stats_) return fn();
    const auto start = std::chrono::steady_clock::now();
    fn();
    OpTime& t = times_[key];
    t.calls += 1;
    t.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  // A call's kernel, timed under its name with TAPML_CPU_STATS.
  void run_kernel(const OpCall& c) {
    timed(stats_ ? stats_key(c) : std::string(), [&] { kernels().run(c, info_.name); });
  }

  // ---- Held calls (backend/call_fusion.h). The rmsnorm before a group runs on its own (it
  // is cheap and usually inline); rope pairs run call by call.
  std::unique_ptr<CallFusion> fusion_;

  void start_fusion() {
    CallFusion::Hooks h;
    h.can_hold_norm = [](const OpCall&) { return false; };
    h.can_hold_matmul = [](const OpCall& c, bool) {
      return c.inputs[0].dtype == DType::F32 && weight_type(c.inputs[1].dtype).has_value();
    };
    h.launch_group = [this](FusedGroup& g) { launch_group(g); };
    h.launch_rope = [this](const OpCall& c, const OpCall* second) {
      run_kernel(c);
      if (second) run_kernel(*second);
    };
    h.run = [this](const OpCall& c) { run_kernel(c); };
    fusion_ = std::make_unique<CallFusion>(std::move(h));
  }

  void flush_if_held(BufferId id) {
    if (fusion_ && fusion_->holds(id)) fusion_->flush();
  }

  void launch_group(const FusedGroup& g) {
    // Threads write their rows while others still read every weight of the group: an output
    // that overlaps a weight (legal across calls) needs the calls' order.
    bool apart = true;
    for (const OpCall& m : g.matmuls) {
      for (const OpCall& o : g.matmuls) apart = apart && !overlap(o.outputs[0], m.inputs[1]);
      if (g.epilogue != FusedGroup::None) apart = apart && !overlap(g.tail.outputs[0], m.inputs[1]);
    }
    if (!apart) {
      for (const OpCall& m : g.matmuls) run_kernel(m);
      if (g.epilogue != FusedGroup::None) run_kernel(g.tail);
      return;
    }
    std::string key;
    if (stats_) {
      key = g.epilogue == FusedGroup::Swiglu ? "matmul x2+swiglu"
            : g.epilogue == FusedGroup::Add  ? "matmul+add"
            : g.matmuls.size() == 1          ? "matmul"
                                             : "matmul x" + std::to_string(g.matmuls.size());
      if (g.matmuls[0].inputs[0].shape[0] == 1) key += " (1 row)";
    }
    timed(key, [&] { matmul_group(g); });
  }

  // One dispatch for the group, of T rows each, split in units of transpose_x's size (4 or
  // 12 output rows). Swiglu: unit i is the same rows of both gate and up, then the swiglu of
  // those elements in every row. Otherwise the matmuls' units follow
  // one another, and with Add a range adds the elements it has just computed.
  void matmul_group(const FusedGroup& g) {
    const size_t n = g.matmuls.size();
    const int64_t T = g.matmuls[0].inputs[0].shape[0];
    if (T == 0) return;
    cpu::MatmulArgs m[3]{};
    for (size_t i = 0; i < n; ++i) {
      const OpCall& c = g.matmuls[i];
      const DeviceTensor& w = c.inputs[1];
      m[i] = {data<float>(c.inputs[0]), ptr(w),    wtype(w), data<float>(c.outputs[0]), T,
              c.inputs[0].shape[1],     w.shape[0]};
    }
    const int64_t K = m[0].K;
    const int64_t unit = transpose_x(m, n);
    int64_t first[4] = {0};  // each matmul's first unit
    for (size_t i = 0; i < n; ++i) first[i + 1] = first[i] + (m[i].N + unit - 1) / unit;
    if (g.epilogue == FusedGroup::Swiglu) {
      const int64_t N = m[0].N;
      float* out = data<float>(g.tail.outputs[0]);
      split(first[1], 2 * unit * K * T, [&](int64_t b, int64_t e) {
        const int64_t n0 = b * unit, n1 = std::min(N, e * unit);
        cpu::matmul_range(m[0], n0, n1);
        cpu::matmul_range(m[1], n0, n1);
        for (int64_t t = 0; t < T; ++t)
          cpu::swiglu(m[0].out + t * N + n0, m[1].out + t * N + n0, out + t * N + n0, n1 - n0);
      });
      return;
    }
    const bool with_add = g.epilogue == FusedGroup::Add;
    const float* a = with_add ? data<float>(g.tail.inputs[0]) : nullptr;
    const float* b = with_add ? data<float>(g.tail.inputs[1]) : nullptr;
    float* out = with_add ? data<float>(g.tail.outputs[0]) : nullptr;
    split(first[n], unit * K * T, [&](int64_t begin, int64_t end) {
      for (size_t i = 0; i < n; ++i) {
        const int64_t lo = std::max(begin, first[i]), hi = std::min(end, first[i + 1]);
        if (lo >= hi) continue;
        const int64_t N = m[i].N, n0 = (lo - first[i]) * unit,
                      n1 = std::min(N, (hi - first[i]) * unit);
        cpu::matmul_range(m[i], n0, n1);
        if (with_add)
          for (int64_t t = 0; t < T; ++t)
            cpu::add(a + t * N + n0, b + t * N + n0, out + t * N + n0, n1 - n0);
      }
    });
  }

  // fn(begin, end) over [0, units), on the pool only when the total work is worth it. Loops
  // whose share per thread is long (prefill) take kFinePieces ranges per thread, claimed by
  // whichever thread is free, so that one thread slowed by a neighbour does not hold up all.
  template <class F>
  void split(int64_t units, int64_t work_per_unit, F&& fn) {
    if (units <= 0) return;
    if (units * work_per_unit < kInlineWork) {
      fn(int64_t(0), units);
    } else {
      dispatches_ += 1;
      const bool long_share = units * work_per_unit / pool_.size() >= kLongShare;
      pool_.parallel_for(units, fn, long_share ? kFinePieces : 1);
    }
  }

  static WeightType wtype(const DeviceTensor& t) {
    auto w = weight_type(t.dtype);
    TAPML_REQUIRE(w.has_value(),
                  "cpu: weight must be f32, f16 or bf16, got " + std::string(dtype_name(t.dtype)));
    return *w;
  }

  // An elementwise op over the whole tensor, in pieces of whole cache lines.
  template <class F>
  void elementwise(int64_t n, int64_t cost, F&& fn) {
    constexpr int64_t kPiece = 64;
    split((n + kPiece - 1) / kPiece, kPiece * cost,
          [&](int64_t b, int64_t e) { fn(b * kPiece, std::min(n, e * kPiece)); });
  }

  // Checked before anything is written, so a bad id leaves the output untouched.
  static void check_ids(const int32_t* ids, int64_t T, int64_t V) {
    for (int64_t t = 0; t < T; ++t)
      TAPML_REQUIRE(ids[t] >= 0 && ids[t] < V, "embedding: token id " + std::to_string(ids[t]) +
                                                   " outside the vocabulary of " +
                                                   std::to_string(V));
  }

  void embedding(const OpCall& c) {
    const DeviceTensor& table = c.inputs[0];
    const int32_t* ids = data<int32_t>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[1].shape[0], V = table.shape[0], D = table.shape[1];
    check_ids(ids, T, V);
    const WeightType type = wtype(table);
    const size_t row_bytes = size_t(D) * dtype_size(table.dtype);
    const std::byte* base = ptr(table);
    split(T, D, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t)
        cpu::convert_to_f32(base + size_t(ids[t]) * row_bytes, type, D, out + t * D);
    });
  }

  // A quantized table: each row dequantized exactly as ref does (core's dequantize_row).
  void embedding_quant(const OpCall& c) {
    const DeviceTensor& table = c.inputs[0];
    const int32_t* ids = data<int32_t>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[1].shape[0], V = table.shape[0], D = table.shape[1];
    check_ids(ids, T, V);
    const QuantType qt = *block_quant(table.dtype);
    const size_t rb = row_bytes(table.dtype, D);
    const std::byte* base = ptr(table);
    split(T, D, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t)
        dequantize_row(qt, base + size_t(ids[t]) * rb, out + t * D, D);
    });
  }

  // A quantized weight: activations quantized once per call (on this thread), then rows of
  // the weight split over the pool like matmul's.
  void matmul_quant(const OpCall& c) {
    const DeviceTensor& w = c.inputs[1];
    const int64_t T = c.inputs[0].shape[0], K = c.inputs[0].shape[1], N = w.shape[0];
    if (T == 0) return;
    const QuantType qt = *block_quant(w.dtype);
    cpu::quantize_activations(qt, data<float>(c.inputs[0]), T, K, activations_);
    cpu::QuantMatmulArgs a{&activations_, ptr(w), qt, data<float>(c.outputs[0]), T, K, N};
    split((N + kGroup - 1) / kGroup, kGroup * T * K, [&](int64_t b, int64_t e) {
      cpu::quant_matmul_range(a, b * kGroup, std::min(N, e * kGroup));
    });
  }

  void rmsnorm(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], D = c.inputs[0].shape[1];
    const double eps = c.attrs.get("eps");
    const float* w = weights_f32(c.inputs[1], D);
    split(T, 2 * D, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const double ss = cpu::sum_squares(x + t * D, D);
        const float inv = float(1.0 / std::sqrt(ss / double(D) + eps));
        cpu::scale_mul(x + t * D, inv, w, out + t * D, D);
      }
    });
  }

  // A weight vector as f32: the tensor itself, or a widened copy in scratch_.
  const float* weights_f32(const DeviceTensor& t, int64_t n) {
    if (t.dtype == DType::F32) return data<float>(t);
    scratch_.resize(size_t(n));
    cpu::convert_to_f32(ptr(t), wtype(t), n, scratch_.data());
    return scratch_.data();
  }

  void matmul(const OpCall& c) {
    const DeviceTensor& w = c.inputs[1];
    cpu::MatmulArgs a{data<float>(c.inputs[0]),
                      ptr(w),
                      wtype(w),
                      data<float>(c.outputs[0]),
                      c.inputs[0].shape[0],
                      c.inputs[0].shape[1],
                      w.shape[0]};
    if (a.T == 0) return;
    // Split over output features in units of whole tiles.
    const int64_t unit = transpose_x(&a, 1);
    split((a.N + unit - 1) / unit, unit * a.T * a.K,
          [&](int64_t b, int64_t e) { cpu::matmul_range(a, b * unit, std::min(a.N, e * unit)); });
  }

  // Matmuls of many rows (all of m[0..n) read the same x) take x transposed, once for all
  // of them, split over K: their outer-product kernels read it so. Returns the unit of
  // output features to split them at. Only where every thread gets kXtRowsPerThread output
  // rows or more: each thread pulls all of the transposed x into its caches, and its first
  // tile's weights come unprefetched, costs a thin share does not repay. On the 16-core
  // Emerald Rapids host at 16 threads (125M f32 prefill, TAPML_CPU_STATS, 10 prefills each)
  // the outer-product kernel took longer than the dot-product tiles for every group: 768
  // rows (48 per thread) +35%, 1,280 (80) +26%, 4,096 (256) +4.5%; whole prefills there, 3
  // alternating rounds: 16 threads f32 0.88-0.93 of the old, f16 0.91-0.96; 8 threads f32
  // 0.93-1.05, f16 0.97-1.10. On the 2-core Zen 5 VM (384 and more rows per thread) it is
  // the faster, f32 prefill +15%.
  int64_t transpose_x(cpu::MatmulArgs* m, size_t n) {
    const int64_t T = m[0].T, K = m[0].K;
    int64_t rows = 0;
    for (size_t i = 0; i < n; ++i) rows += m[i].N;
    if (T < cpu::kManyRows || rows < kXtRowsPerThread * int64_t(pool_.size())) return kGroup;
    const int64_t ld = cpu::transposed_width(T);
    // Aligned to a cache line, so that the kernels' token vectors never straddle two.
    xt_.resize(size_t(cpu::transposed_floats(T, K) + cpu::kXtAlign));
    float* xt = xt_.data();
    while (reinterpret_cast<uintptr_t>(xt) % (cpu::kXtAlign * sizeof(float)) != 0) ++xt;
    constexpr int64_t kStrip = cpu::kTransposeStrip;
    split((K + kStrip - 1) / kStrip, kStrip * T, [&](int64_t b, int64_t e) {
      cpu::transpose_rows(m[0].x, T, K, b * kStrip, std::min(K, e * kStrip), xt, ld);
    });
    for (size_t i = 0; i < n; ++i) {
      m[i].xt = xt;
      m[i].ldxt = ld;
    }
    return cpu::kManyRowsUnit;
  }

  // The rotary frequencies of the last rope call's base, dimensions and factors, and the
  // cosines and sines of the last one-row call's position: a decode step's q and k (and every
  // layer's) share them, and std::pow, cos and sin were most of a one-row rope's time.
  struct RopeCache {
    double base = 0;
    std::vector<float> factors;
    std::vector<double> freq;
    bool row_valid = false;
    int32_t row_pos = 0;
    std::vector<double> cs, sn;
  };
  RopeCache rope_cache_;

  const std::vector<double>& rope_freq(double base, int64_t half, const float* factors) {
    RopeCache& rc = rope_cache_;
    const bool same = rc.base == base && int64_t(rc.freq.size()) == half &&
                      (factors ? rc.factors.size() == size_t(half) &&
                                     std::equal(factors, factors + half, rc.factors.begin())
                               : rc.factors.empty());
    if (same) return rc.freq;
    rc.base = base;
    rc.factors = factors ? std::vector<float>(factors, factors + half) : std::vector<float>();
    rc.freq.resize(size_t(half));
    const double rd = double(2 * half);
    for (int64_t i = 0; i < half; ++i) {
      rc.freq[size_t(i)] = std::pow(base, -2.0 * double(i) / rd);
      if (factors) rc.freq[size_t(i)] /= factors[i];
    }
    rc.row_valid = false;
    return rc.freq;
  }

  static void rope_angles(const std::vector<double>& freq, int32_t pos, double* cs, double* sn) {
    for (size_t i = 0; i < freq.size(); ++i) {
      const double theta = double(pos) * freq[i];
      cs[i] = std::cos(theta);
      sn[i] = std::sin(theta);
    }
  }

  void rope(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    const int32_t* pos = data<int32_t>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], W = c.inputs[0].shape[1];
    const int64_t H = c.attrs.get_int("n_heads"), hd = c.attrs.get_int("head_dim");
    const int64_t half = c.attrs.get_int("rope_dim") / 2;
    const bool neox = c.attrs.get_int("pairing") == 1;
    const float* factors = c.inputs.size() > 2 ? data<float>(c.inputs[2]) : nullptr;
    const std::vector<double>& freq = rope_freq(c.attrs.get("base"), half, factors);
    // One row: its angles from the cache when the last one-row call had the same position.
    RopeCache& rc = rope_cache_;
    if (T == 1 && !(rc.row_valid && rc.row_pos == pos[0])) {
      rc.cs.resize(size_t(half));
      rc.sn.resize(size_t(half));
      rope_angles(freq, pos[0], rc.cs.data(), rc.sn.data());
      rc.row_valid = true;
      rc.row_pos = pos[0];
    }
    split(T, 4 * W, [&](int64_t b, int64_t e) {
      std::vector<double> cs_row, sn_row;
      thread_local std::vector<float> row;  // kept: a decode step ropes twice per layer
      row.resize(static_cast<size_t>(W));
      for (int64_t t = b; t < e; ++t) {
        // One sin/cos per pair and row, shared by all heads.
        const double* cs = rc.cs.data();
        const double* sn = rc.sn.data();
        if (T > 1) {
          cs_row.resize(size_t(half));
          sn_row.resize(size_t(half));
          rope_angles(freq, pos[t], cs_row.data(), sn_row.data());
          cs = cs_row.data();
          sn = sn_row.data();
        }
        std::memcpy(row.data(), x + t * W, size_t(W) * 4);  // out may alias x
        for (int64_t h = 0; h < H; ++h) {
          const float* r = row.data() + h * hd;
          float* o = out + t * W + h * hd;
          if (o != r) std::memcpy(o, r, size_t(hd) * 4);
          for (int64_t i = 0; i < half; ++i) {
            const int64_t p = neox ? i : 2 * i, q = neox ? i + half : 2 * i + 1;
            o[p] = float(r[p] * cs[i] - r[q] * sn[i]);
            o[q] = float(r[p] * sn[i] + r[q] * cs[i]);
          }
        }
      }
    });
  }

  void kv_store(const OpCall& c) {
    const int64_t S = c.inputs[0].shape[0], C = c.inputs[0].shape[1], T = c.inputs[2].shape[0];
    const int64_t p = data<int32_t>(c.inputs[4])[0];
    TAPML_REQUIRE(p >= 0 && p + T <= S, "kv_store: rows " + std::to_string(p) + ".." +
                                            std::to_string(p + T) + " do not fit a cache of " +
                                            std::to_string(S));
    for (int cache = 0; cache < 2; ++cache) {
      const float* src = data<float>(c.inputs[2 + cache]);
      if (c.outputs[cache].dtype == DType::F16)
        elementwise(T * C, 1, [&](int64_t b, int64_t e) {
          cpu::store_f16(src + b, e - b, data<uint16_t>(c.outputs[cache]) + p * C + b);
        });
      else
        std::memmove(data<float>(c.outputs[cache]) + p * C, src, size_t(T * C) * 4);
    }
  }

  void attention(const OpCall& c) {
    cpu::AttentionArgs a{data<float>(c.inputs[0]),
                         ptr(c.inputs[1]),
                         ptr(c.inputs[2]),
                         data<float>(c.outputs[0]),
                         c.inputs[0].shape[0],
                         c.inputs[1].shape[0],
                         c.attrs.get_int("n_heads"),
                         c.attrs.get_int("n_kv_heads"),
                         c.attrs.get_int("head_dim"),
                         float(c.attrs.get("scale"))};
    a.window = int64_t(c.attrs.get_or("window", 0));
    a.softcap = float(c.attrs.get_or("softcap", 0));
    a.kv_f16 = c.inputs[1].dtype == DType::F16;
    const int64_t keys = a.window > 0 ? std::min(a.P, a.window) : a.P;
    if (a.T >= 2 * cpu::kAttentionTileRows) {
      // Prefill: the keys transposed once (split over their rows), then tiles of query rows
      // (2-core VM, 125M f32, 2 threads, TAPML_CPU_STATS: P=1024 25.8 -> 8.8 ms a layer,
      // P=128 515 -> 301 us; per query row and key a dot product and a horizontal sum before).
      a.ldkt = cpu::transposed_keys_width(a.P);
      kt_.resize(size_t(a.KV * a.hd * a.ldkt));
      a.kt = kt_.data();
      split(a.KV * a.hd, a.P,
            [&](int64_t b, int64_t e) { cpu::transpose_keys(a, b, e, kt_.data()); });
      const int64_t R = cpu::kAttentionTileRows, blocks = (a.T + R - 1) / R;
      split(a.H * blocks, 2 * R * keys * a.hd,
            [&](int64_t b, int64_t e) { cpu::attention_tiles_range(a, b, e); });
      return;
    }
    // Tasks are (head, row); a task reads up to P keys and values of head_dim each.
    split(a.T * a.H, 2 * keys * a.hd, [&](int64_t b, int64_t e) { cpu::attention_range(a, b, e); });
  }

  void swiglu(const OpCall& c) {
    const float* g = data<float>(c.inputs[0]);
    const float* u = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    elementwise(c.inputs[0].shape.numel(), 8,
                [&](int64_t b, int64_t e) { cpu::swiglu(g + b, u + b, out + b, e - b); });
  }

  void add(const OpCall& c) {
    const float* a = data<float>(c.inputs[0]);
    const float* b = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    elementwise(c.inputs[0].shape.numel(), 1,
                [&](int64_t i, int64_t e) { cpu::add(a + i, b + i, out + i, e - i); });
  }

  void gelu(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    float* out = data<float>(c.outputs[0]);
    const bool tanh_form = c.attrs.get_int("approx") == 1;
    elementwise(c.inputs[0].shape.numel(), 16,
                [&](int64_t b, int64_t e) { cpu::gelu(x + b, tanh_form, out + b, e - b); });
  }

  // Rows in parallel; each row is a sum, a sum of squared deviations and a scaled copy.
  void layernorm(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    const float* w = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], N = c.inputs[0].shape[1];
    const double eps = c.attrs.get("eps");
    split(T, 3 * N, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) cpu::layernorm_row(x + t * N, w, eps, out + t * N, N);
    });
  }

  void bias(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    const float* b = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], N = c.inputs[0].shape[1];
    split(T, N, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) cpu::add(x + t * N, b, out + t * N, N);
    });
  }

  void mul(const OpCall& c) {
    const float* a = data<float>(c.inputs[0]);
    const float* b = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    elementwise(c.inputs[0].shape.numel(), 1,
                [&](int64_t i, int64_t e) { cpu::mul(a + i, b + i, out + i, e - i); });
  }

  void scale(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    float* out = data<float>(c.outputs[0]);
    const float s = float(c.attrs.get("s"));
    elementwise(c.inputs[0].shape.numel(), 1,
                [&](int64_t i, int64_t e) { cpu::scale(x + i, s, out + i, e - i); });
  }

  void softcap(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    float* out = data<float>(c.outputs[0]);
    const float cap = float(c.attrs.get("cap"));
    elementwise(c.inputs[0].shape.numel(), 16,
                [&](int64_t i, int64_t e) { cpu::softcap(x + i, cap, out + i, e - i); });
  }

  // One sigmoid per row, in f64 without overflow, then a scaled copy of the row.
  void sigmoid_gate(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    const float* g = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], N = c.inputs[0].shape[1];
    split(T, N, [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const double z = g[t];
        const double s = z >= 0 ? 1 / (1 + std::exp(-z)) : std::exp(z) / (1 + std::exp(z));
        cpu::scale(x + t * N, float(s), out + t * N, N);
      }
    });
  }

  void moe_route(const OpCall& c) {
    const float* logits = data<float>(c.inputs[0]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], E = c.inputs[0].shape[1];
    const int64_t k = c.attrs.get_int("k");
    const bool norm = c.attrs.get_int("norm") == 1;
    split(T, E * (4 + k), [&](int64_t b, int64_t e) {
      std::vector<float> p(static_cast<size_t>(E));
      std::vector<char> chosen(static_cast<size_t>(E));
      for (int64_t t = b; t < e; ++t) {
        const float* l = logits + t * E;
        float* r = out + t * E;
        const float mx = *std::max_element(l, l + E);
        float sum = 0;
        for (int64_t i = 0; i < E; ++i) sum += (p[size_t(i)] = std::exp(l[i] - mx));
        // The k largest logits; a strict > keeps the lower index among equals.
        std::fill(chosen.begin(), chosen.end(), 0);
        float chosen_sum = 0;
        for (int64_t n = 0; n < k; ++n) {
          int64_t best = -1;
          for (int64_t i = 0; i < E; ++i)
            if (!chosen[size_t(i)] && (best < 0 || l[i] > l[best])) best = i;
          chosen[size_t(best)] = 1;
          chosen_sum += p[size_t(best)];
        }
        // p / sum, or p / chosen_sum: (p / sum) / (chosen_sum / sum) with one rounding less.
        const float inv = 1.0f / (norm ? chosen_sum : sum);
        for (int64_t i = 0; i < E; ++i) r[i] = chosen[size_t(i)] ? p[size_t(i)] * inv : 0.0f;
      }
    });
  }

  // Expert by expert: the tokens routed to an expert are gathered into a block, which goes
  // through the matmul kernels like a prefill (gate and up, swiglu, down) split over the
  // pool by output columns, and its rows are added into the output in expert order, so
  // that the result does not depend on the number of threads.
  void moe_ffn(const OpCall& c) {
    const float* x = data<float>(c.inputs[0]);
    const float* route = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    const int64_t T = c.inputs[0].shape[0], D = c.inputs[0].shape[1];
    const int64_t E = c.inputs[1].shape[1], H = c.inputs[2].shape[1];
    const WeightType type = wtype(c.inputs[2]);
    const size_t expert_bytes = size_t(H * D) * dtype_size(c.inputs[2].dtype);
    const std::byte *gate = ptr(c.inputs[2]), *up = ptr(c.inputs[3]), *down = ptr(c.inputs[4]);
    std::fill(out, out + T * D, 0.0f);
    std::vector<int64_t> tokens;
    std::vector<float> xs, g, u, y;
    for (int64_t e = 0; e < E; ++e) {
      tokens.clear();
      for (int64_t t = 0; t < T; ++t)
        if (route[t * E + e] != 0) tokens.push_back(t);
      const int64_t n = int64_t(tokens.size());
      if (n == 0) continue;  // not computed: its weights may hold anything
      xs.resize(size_t(n * D));
      g.resize(size_t(n * H));
      u.resize(size_t(n * H));
      y.resize(size_t(n * D));
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(xs.data() + i * D, x + tokens[size_t(i)] * D, size_t(D) * 4);
      cpu::MatmulArgs gu[2] = {
          {xs.data(), gate + size_t(e) * expert_bytes, type, g.data(), n, D, H},
          {xs.data(), up + size_t(e) * expert_bytes, type, u.data(), n, D, H}};
      const int64_t unit = transpose_x(gu, 2);
      split((H + unit - 1) / unit, 2 * unit * n * D, [&](int64_t b, int64_t end) {
        cpu::matmul_range(gu[0], b * unit, std::min(H, end * unit));
        cpu::matmul_range(gu[1], b * unit, std::min(H, end * unit));
      });
      elementwise(n * H, 8, [&](int64_t b, int64_t end) {
        cpu::swiglu(g.data() + b, u.data() + b, g.data() + b, end - b);
      });
      cpu::MatmulArgs da{g.data(), down + size_t(e) * expert_bytes, type, y.data(), n, H, D};
      const int64_t down_unit = transpose_x(&da, 1);
      split((D + down_unit - 1) / down_unit, down_unit * n * H, [&](int64_t b, int64_t end) {
        cpu::matmul_range(da, b * down_unit, std::min(D, end * down_unit));
      });
      for (int64_t i = 0; i < n; ++i) {
        const int64_t t = tokens[size_t(i)];
        const float r = route[t * E + e];
        float* o = out + t * D;
        const float* yi = y.data() + i * D;
        for (int64_t d = 0; d < D; ++d) o[d] += r * yi[d];
      }
    }
  }

  ThreadPool pool_;
  std::vector<float> scratch_;
  std::vector<float> kt_;              // prefill attention's keys, transposed
  std::vector<float> xt_;              // many-row matmuls' x, transposed
  cpu::QuantActivations activations_;  // matmul_quant's quantized x, kept between calls
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const BackendUri& uri) {
  uri.allow_params({"threads"});
  TAPML_REQUIRE_USAGE(uri.target.empty(), "backend URI '" + uri.text +
                                              "': cpu takes no device name ('" + uri.target +
                                              "'); use cpu or cpu?threads=N");
  const int64_t hw = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t threads = uri.int_param("threads", hw);
  TAPML_REQUIRE_USAGE(threads >= 1 && threads <= 1024, "backend URI '" + uri.text +
                                                           "': threads=" + std::to_string(threads) +
                                                           " is out of range (1..1024)");
  return std::make_unique<CpuBackend>(uri.text, int(threads));
}

}  // namespace tapml

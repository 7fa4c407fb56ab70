// Kernel throughput through the Backend interface, as the runtime calls it: matmul as a
// decode GEMV (T=1, bound by weight bytes) and as a prefill (T=64, bound by FLOPs) at the
// size of a ~100M-parameter model (K=768, N=2048/3072), which stay in cache between
// iterations, and as decode meets them (gemv_*_cold: K x N, each iteration another copy of
// the weight, none in cache; N=32768 is an output layer; cpu2: 2 threads); plus decode attention
// and the thread pool's dispatch cost. ref runs only a small case: it is the f64 reference, orders
// of magnitude slower.
//
// Counters: FLOP/s (2*T*N*K per matmul) and bytes_per_second (weights + activations read
// and written once).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/ref/ref_backend.h"
#include "core/dtype.h"
#include "core/thread_pool.h"

namespace tapml {
namespace {

std::unique_ptr<Backend> open(const std::string& uri) {
  BackendUri u = BackendUri::parse(uri);
  return u.scheme == "ref" ? make_ref_backend(u) : make_cpu_backend(u);
}

// A device tensor filled with small random values of `dtype`.
DeviceTensor upload(Backend& be, DType dtype, Shape shape, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-0.5f, 0.5f);
  const int64_t n = shape.numel();
  std::vector<std::byte> bytes(size_t(n) * dtype_size(dtype));
  for (int64_t i = 0; i < n; ++i) {
    float v = dist(gen);
    if (dtype == DType::F32) {
      std::memcpy(bytes.data() + 4 * i, &v, 4);
    } else {
      uint16_t h = dtype == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  DeviceTensor t{be.alloc(bytes.size()), 0, dtype, std::move(shape)};
  be.write(t.buffer, 0, bytes.data(), bytes.size());
  return t;
}

void BM_Matmul(benchmark::State& state, const char* uri, DType wt) {
  const int64_t T = state.range(0), K = state.range(1), N = state.range(2);
  auto be = open(uri);
  OpCall call{Op::Matmul, {}, {}, {}, "bench"};
  call.inputs = {upload(*be, DType::F32, Shape{T, K}, 1), upload(*be, wt, Shape{N, K}, 2)};
  call.outputs = {{be->alloc(size_t(T * N) * 4), 0, DType::F32, Shape{T, N}}};
  for (auto _ : state) {
    be->run(call);
    be->sync();
  }
  const double flops = 2.0 * double(T) * double(N) * double(K);
  const double bytes = double(N * K) * double(dtype_size(wt)) + double(T * K + T * N) * 4;
  state.counters["FLOP/s"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(int64_t(bytes) * state.iterations());
  state.SetLabel(be->info().device);
}

// Decode as a model meets it: one x row against weights that are not in any cache, each
// iteration the next of enough copies to fill 1 GiB (server CPUs have L3 caches of 300 MB).
void cold_matmul(benchmark::State& state, const char* uri, DType wt, int64_t T, int64_t K,
                 int64_t N) {
  auto be = open(uri);
  const int64_t bytes_of_w = N * K * int64_t(dtype_size(wt));
  const int64_t copies = std::max<int64_t>(2, (int64_t(1) << 30) / bytes_of_w);
  std::vector<OpCall> calls;
  const DeviceTensor x = upload(*be, DType::F32, Shape{T, K}, 1);
  const DeviceTensor out{be->alloc(size_t(T * N) * 4), 0, DType::F32, Shape{T, N}};
  const DeviceTensor w = upload(*be, wt, Shape{N, K}, 2);
  std::vector<std::byte> bytes(static_cast<size_t>(bytes_of_w));
  be->read(w.buffer, 0, bytes.data(), bytes.size());
  for (int64_t i = 0; i < copies; ++i) {
    DeviceTensor c = w;
    if (i > 0) {
      c.buffer = be->alloc(bytes.size());
      be->write(c.buffer, 0, bytes.data(), bytes.size());
    }
    calls.push_back({Op::Matmul, {}, {x, c}, {out}, "bench"});
  }
  size_t next = 0;
  for (auto _ : state) {
    be->run(calls[next]);
    be->sync();
    next = (next + 1) % calls.size();
  }
  state.SetBytesProcessed(bytes_of_w * state.iterations());
  state.counters["FLOP/s"] = benchmark::Counter(double(2 * T * K * N) * double(state.iterations()),
                                                benchmark::Counter::kIsRate);
  state.SetLabel(be->info().device);
}

// Weights cold (a new copy each call, 1 GiB of them in turn, as a model's layers come), x
// [1, K]: a decode step's matmul.
void BM_MatmulCold(benchmark::State& state, const char* uri, DType wt) {
  cold_matmul(state, uri, wt, 1, state.range(0), state.range(1));
}

// The same for T rows of x: a prefill's matmul as a forward pass meets it, its weights fresh
// from memory (BM_Matmul calls it with the same weights each time, which stay in the
// last-level cache).
void BM_MatmulColdRows(benchmark::State& state, const char* uri, DType wt) {
  cold_matmul(state, uri, wt, state.range(0), state.range(1), state.range(2));
}

void BM_AttentionDecode(benchmark::State& state, const char* uri) {
  const int64_t P = state.range(0), H = 12, KV = state.range(1), hd = 64;
  auto be = open(uri);
  OpCall call{Op::Attention,
              {{"n_heads", double(H)},
               {"n_kv_heads", double(KV)},
               {"head_dim", double(hd)},
               {"scale", 1.0 / std::sqrt(double(hd))}},
              {},
              {},
              "bench"};
  call.inputs = {upload(*be, DType::F32, Shape{1, H * hd}, 1),
                 upload(*be, DType::F32, Shape{P, KV * hd}, 2),
                 upload(*be, DType::F32, Shape{P, KV * hd}, 3)};
  call.outputs = {{be->alloc(size_t(H * hd) * 4), 0, DType::F32, Shape{1, H * hd}}};
  for (auto _ : state) {
    be->run(call);
    be->sync();
  }
  const double flops = 4.0 * double(H) * double(P) * double(hd);  // q.k and p*v
  state.counters["FLOP/s"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.SetBytesProcessed(int64_t(2 * P * KV * hd * 4) * state.iterations());
  state.SetLabel(be->info().device);
}

// A prefill's rmsnorm (T rows of 768), in cache between iterations: the elementwise ops'
// throughput, bound by memory traffic (x read, out written).
void BM_RmsNorm(benchmark::State& state, const char* uri) {
  const int64_t T = state.range(0), D = 768;
  auto be = open(uri);
  OpCall call{Op::RmsNorm, {{"eps", 1e-5}}, {}, {}, "bench"};
  call.inputs = {upload(*be, DType::F32, Shape{T, D}, 1), upload(*be, DType::F32, Shape{D}, 2)};
  call.outputs = {{be->alloc(size_t(T * D) * 4), 0, DType::F32, Shape{T, D}}};
  for (auto _ : state) {
    be->run(call);
    be->sync();
  }
  state.SetBytesProcessed(int64_t(2 * T * D * 4) * state.iterations());
  state.SetLabel(be->info().device);
}

// The cost of waking the pool for a trivial loop: what every multi-threaded op of a decode
// step pays on top of its work.
void BM_PoolDispatch(benchmark::State& state) {
  ThreadPool pool(int(state.range(0)));
  std::atomic<int64_t> sink{0};
  for (auto _ : state) pool.parallel_for(pool.size(), [&](int64_t b, int64_t e) { sink += e - b; });
  benchmark::DoNotOptimize(sink.load());
}

void model_sizes(benchmark::internal::Benchmark* b, int64_t T) {
  b->Args({T, 768, 2048})->Args({T, 768, 3072})->UseRealTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK_CAPTURE(BM_Matmul, gemv_cpu_f32, "cpu", DType::F32)->Apply([](auto* b) {
  model_sizes(b, 1);
});
BENCHMARK_CAPTURE(BM_Matmul, gemv_cpu_f16, "cpu", DType::F16)->Apply([](auto* b) {
  model_sizes(b, 1);
});
BENCHMARK_CAPTURE(BM_Matmul, gemv_cpu_bf16, "cpu", DType::BF16)->Apply([](auto* b) {
  model_sizes(b, 1);
});
void decode_sizes(benchmark::internal::Benchmark* b) {
  b->Args({768, 768})->Args({768, 2048})->Args({2048, 768})->Args({768, 32768});
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}
BENCHMARK_CAPTURE(BM_MatmulCold, gemv_cpu_cold_f32, "cpu", DType::F32)->Apply(decode_sizes);
BENCHMARK_CAPTURE(BM_MatmulCold, gemv_cpu_cold_f16, "cpu", DType::F16)->Apply(decode_sizes);
BENCHMARK_CAPTURE(BM_MatmulCold, gemv_cpu2_cold_f32, "cpu?threads=2", DType::F32)
    ->Apply(decode_sizes);
BENCHMARK_CAPTURE(BM_MatmulCold, gemv_cpu2_cold_f16, "cpu?threads=2", DType::F16)
    ->Apply(decode_sizes);
BENCHMARK_CAPTURE(BM_Matmul, gemv_cpu1_f32, "cpu?threads=1", DType::F32)->Apply([](auto* b) {
  model_sizes(b, 1);
});
BENCHMARK_CAPTURE(BM_Matmul, gemv_cpu1_f16, "cpu?threads=1", DType::F16)->Apply([](auto* b) {
  model_sizes(b, 1);
});
BENCHMARK_CAPTURE(BM_Matmul, prefill_cpu_f32, "cpu", DType::F32)->Apply([](auto* b) {
  model_sizes(b, 64);
});
BENCHMARK_CAPTURE(BM_Matmul, prefill_cpu_f16, "cpu", DType::F16)->Apply([](auto* b) {
  model_sizes(b, 64);
});
BENCHMARK_CAPTURE(BM_Matmul, prefill_cpu1_f32, "cpu?threads=1", DType::F32)->Apply([](auto* b) {
  model_sizes(b, 64);
});
// A 125M model's prefill of 128 tokens: the up projection and the down projection (K=2048).
void prefill_sizes(benchmark::internal::Benchmark* b) {
  b->Args({128, 768, 2048})
      ->Args({128, 2048, 768})
      ->Args({128, 5632, 2048})
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond);
}
BENCHMARK_CAPTURE(BM_Matmul, prefill128_cpu1_f32, "cpu?threads=1", DType::F32)
    ->Apply(prefill_sizes);
BENCHMARK_CAPTURE(BM_Matmul, prefill128_cpu1_f16, "cpu?threads=1", DType::F16)
    ->Apply(prefill_sizes);
// The same projections for a prompt of 1024 tokens: per token, a long prefill's matmuls.
BENCHMARK_CAPTURE(BM_MatmulColdRows, prefill_cpu2_cold_f32, "cpu?threads=2", DType::F32)
    ->Args({128, 768, 2048})
    ->Args({1024, 768, 2048})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Matmul, prefill_cpu2_f32, "cpu?threads=2", DType::F32)
    ->Args({128, 768, 2048})
    ->Args({1024, 768, 2048})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Matmul, prefill1024_cpu1_f32, "cpu?threads=1", DType::F32)
    ->Args({1024, 768, 2048})
    ->Args({1024, 2048, 768})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_RmsNorm, prefill_cpu1, "cpu?threads=1")
    ->Arg(128)
    ->Arg(1024)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Matmul, gemv_ref_f32, "ref", DType::F32)
    ->Args({1, 768, 256})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Matmul, gemv_ref_f16, "ref", DType::F16)
    ->Args({1, 768, 256})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Matmul, gemv_cpu_small_f32, "cpu", DType::F32)
    ->Args({1, 768, 256})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_PoolDispatch)->Arg(2)->Arg(4)->Arg(8)->Arg(16)->UseRealTime();
// Args: keys P, KV heads (12 query heads of 64). {160, 4} is the random 125M model's decode
// step at the end of a 128 + 32 token run.
BENCHMARK_CAPTURE(BM_AttentionDecode, cpu, "cpu")
    ->Args({512, 12})
    ->Args({160, 4})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_AttentionDecode, cpu1, "cpu?threads=1")
    ->Args({160, 4})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_AttentionDecode, ref, "ref")
    ->Args({512, 12})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tapml

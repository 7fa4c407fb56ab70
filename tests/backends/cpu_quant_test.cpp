// The cpu backend's quantized kernels: matmul computed as ggml computes it (8-bit
// activations, integer block dot products) and embedding rows dequantized exactly.
#include <gtest/gtest.h>
#include <hwy/targets.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/host_call.h"
#include "backend/registry.h"
#include "backends/builtin.h"
#include "carve/recorder.h"
#include "check/oracle.h"
#include "core/quant.h"
#include "replay/replay.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/carve.h"
#include "support/shared.h"
#include "support/tiny_model.h"

namespace tapml {
namespace {

std::vector<float> randoms(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = normal(rng);
  return v;
}

struct Case {
  DType w;
  int64_t T, K, N;
};
void PrintTo(const Case& c, std::ostream* os) {
  *os << dtype_name(c.w) << " T=" << c.T << " K=" << c.K << " N=" << c.N;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  for (DType d : kBlockDTypes) {
    const int64_t b = block_elems(d);
    out.push_back({d, 1, b, 5});
    out.push_back({d, 3, 4 * b, 13});
    if (b == 32) out.push_back({d, 7, 96, 4});
  }
  return out;
}

class CpuQuantMatmul : public ::testing::TestWithParam<Case> {};

// The cpu's result is the ggml formulation of the call up to f32 rounding, which the oracle
// allows, and any change to one block's values moves it beyond that.
// The largest difference between cpu's matmul and the 8-bit formulation computed here
// independently (activations through activations_as_q8, weights dequantized, f64 sums),
// relative to the sum of the magnitudes of the products.
double formulation_error(const Case& c, Backend& cpu) {
  const QuantType qt = *block_quant(c.w);
  Tensor x = Tensor::from_f32({c.T, c.K}, randoms(c.T * c.K, 1));
  Tensor w = Tensor::from_f32_as(c.w, {c.N, c.K}, randoms(c.N * c.K, 2, 0.1f));
  HostCallResult got = run_host_call(cpu, Op::Matmul, {}, {x, w}, "m");
  std::vector<float> xq(size_t(c.T * c.K)), wrow(size_t(c.K));
  for (int64_t t = 0; t < c.T; ++t)
    activations_as_q8(qt, x.data<float>() + t * c.K, xq.data() + t * c.K, c.K);
  double worst = 0;
  for (int64_t n = 0; n < c.N; ++n) {
    dequantize_row(qt, w.bytes() + size_t(n) * row_bytes(c.w, c.K), wrow.data(), c.K);
    for (int64_t t = 0; t < c.T; ++t) {
      double s = 0, mag = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        s += double(xq[size_t(t * c.K + k)]) * wrow[size_t(k)];
        mag += std::fabs(double(xq[size_t(t * c.K + k)]) * wrow[size_t(k)]);
      }
      worst = std::max(worst, std::fabs(got.outputs[0].data<float>()[t * c.N + n] - s) / mag);
    }
  }
  return worst;
}

TEST_P(CpuQuantMatmul, ComputesTheEightBitFormulationOfTheCall) {
  const Case c = GetParam();
  Tensor x = Tensor::from_f32({c.T, c.K}, randoms(c.T * c.K, 1));
  Tensor w = Tensor::from_f32_as(c.w, {c.N, c.K}, randoms(c.N * c.K, 2, 0.1f));
  std::vector<Tensor> inputs{x, w};
  auto cpu = open_backend("cpu?threads=2");
  auto ref = open_backend("ref");
  auto plain = open_backend("ref?acc=f32");
  HostCallResult got = run_host_call(*cpu, Op::Matmul, {}, inputs, "m");
  HostCallResult want = run_host_call(*ref, Op::Matmul, {}, inputs, "m");
  HostCallResult f32 = run_host_call(*plain, Op::Matmul, {}, inputs, "m");

  // f32 rounding of the block products and sums (relative to the sum of magnitudes).
  EXPECT_LT(formulation_error(c, *cpu), 4e-6) << dtype_name(c.w);

  TolerancePolicy policy;
  std::vector<double> noise{measure(want.outputs[0], f32.outputs[0], 0).error};
  std::vector<double> allowance = activation_allowance(policy, Op::Matmul, inputs, want.outputs);
  ASSERT_EQ(allowance.size(), 1u);
  Verdict v = judge(policy, Op::Matmul, c.K, want.outputs, got.outputs, got.guards_intact, noise,
                    allowance);
  EXPECT_TRUE(v.pass) << dtype_name(c.w) << ": " << v.detail;
  // Without the allowance the f32 policy rejects it: the activations really are quantized.
  Verdict strict =
      judge(policy, Op::Matmul, c.K, want.outputs, got.outputs, got.guards_intact, noise);
  EXPECT_FALSE(strict.pass) << dtype_name(c.w) << ": " << strict.detail;
}

INSTANTIATE_TEST_SUITE_P(Types, CpuQuantMatmul, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& i) {
                           return std::string(dtype_name(i.param.w)) + "_T" +
                                  std::to_string(i.param.T) + "_K" + std::to_string(i.param.K);
                         });

// ref?acc=q8, migrate's end-to-end noise reference for quantized models, computes the same
// 8-bit formulation (in f32 sums); cpu agrees with it up to f32 rounding.
TEST(CpuQuant, RefWithEightBitActivationsIsTheSameFormulation) {
  auto q8 = open_backend("ref?acc=q8");
  auto f32 = open_backend("ref?acc=f32");
  auto cpu = open_backend("cpu?threads=2");
  for (DType d : {DType::Q4_0, DType::Q4_K, DType::Q6_K}) {
    const int64_t K = 2 * block_elems(d), T = 3, N = 7;
    std::vector<Tensor> in{Tensor::from_f32({T, K}, randoms(T * K, 5)),
                           Tensor::from_f32_as(d, {N, K}, randoms(N * K, 6, 0.1f))};
    const Tensor a = run_host_call(*q8, Op::Matmul, {}, in, "m").outputs[0];
    const Tensor b = run_host_call(*cpu, Op::Matmul, {}, in, "m").outputs[0];
    const Tensor c = run_host_call(*f32, Op::Matmul, {}, in, "m").outputs[0];
    EXPECT_LT(measure(a, b, 0).error, 1e-5) << dtype_name(d);
    EXPECT_GT(measure(a, c, 0).error, 1e-4) << dtype_name(d);
  }
}

// The kernels differ per instruction set (VNNI, AVX-512 without it, 16-bit multiply-adds
// elsewhere): each one this CPU can run computes the same formulation.
TEST(CpuQuant, EveryInstructionSetComputesTheFormulation) {
  const int64_t supported = hwy::SupportedTargets();
  int ran = 0;
  for (int64_t target : {int64_t(HWY_AVX3_DL), int64_t(HWY_AVX3), int64_t(HWY_AVX2),
                         int64_t(HWY_SSE4), int64_t(HWY_EMU128), int64_t(HWY_SCALAR)}) {
    if (!(supported & target)) continue;
    hwy::SetSupportedTargetsForTest(target);
    auto cpu = open_backend("cpu?threads=1");
    for (DType d : kBlockDTypes)
      for (int64_t T : {1, 3}) {  // decode steps may take another path than prefills
        const Case c{d, T, 2 * block_elems(d) + (block_elems(d) == 32 ? 32 : 0), 6};
        EXPECT_LT(formulation_error(c, *cpu), 4e-6)
            << dtype_name(d) << " T=" << T << " on " << hwy::TargetName(target);
      }
    ++ran;
  }
  hwy::SetSupportedTargetsForTest(0);
  EXPECT_GE(ran, 1);
}

TEST(CpuQuant, EmbeddingRowsAreBitExact) {
  auto cpu = open_backend("cpu?threads=2");
  auto ref = open_backend("ref");
  for (DType d : kBlockDTypes) {
    const int64_t D = 2 * block_elems(d), V = 9;
    Tensor table = Tensor::from_f32_as(d, {V, D}, randoms(V * D, 3));
    std::vector<int32_t> ids_v{0, 8, 3, 3, 5};
    std::vector<Tensor> inputs{table, Tensor::from_i32({5}, ids_v)};
    HostCallResult got = run_host_call(*cpu, Op::Embedding, {}, inputs, "e");
    HostCallResult want = run_host_call(*ref, Op::Embedding, {}, inputs, "e");
    Verdict v = judge(TolerancePolicy(), Op::Embedding, 1, want.outputs, got.outputs,
                      got.guards_intact, {});
    EXPECT_TRUE(v.pass) << dtype_name(d) << ": " << v.detail;
  }
}

// A corpus carved from a model with quantized matrices replays 100% on cpu, and one whose
// weights the backend reads wrongly does not.
TEST(CpuQuant, CarvedCorpusOfAQuantizedModelReplays) {
  for (DType d : {DType::Q4_K, DType::Q6_K, DType::Q4_0, DType::Q8_0}) {
    ModelConfig c;
    c.dim = 256, c.hidden_dim = 512, c.n_layers = 1, c.n_heads = 4, c.n_kv_heads = 2;
    c.vocab_size = 48, c.max_seq_len = 32;
    ModelFile m = testing::make_tiny_llama(7, d, c);
    ASSERT_EQ(m.weights.at("blk.0.ffn_down.weight").dtype(), d);
    const std::string path = testing::temp_dir() + "/quant_" + std::string(dtype_name(d)) + ".db";
    testing::carve_on_ref(m, path, {1, 3, 5, 7}, 6, 2);
    ReplayRun run = replay_corpus(path, "cpu?threads=2", {});
    int matmuls = 0, passed = 0;
    for (const TestResult& r : run.results) {
      EXPECT_TRUE(r.pass) << dtype_name(d) << " test " << r.id << " (" << op_name(r.op) << " at "
                          << r.site << "): " << r.error << r.verdict.detail;
      passed += r.pass;
      matmuls += r.op == Op::Matmul;
    }
    EXPECT_GE(matmuls, 7) << dtype_name(d);
    EXPECT_EQ(passed, int(run.results.size()));
  }
}

}  // namespace
}  // namespace tapml

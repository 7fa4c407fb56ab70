// The quantized kernels of the GPU backends (vulkan, opencl) against ref, from one source, judged
// by the oracle as a replay judges a carved test: matmul with each of the ten block types as its
// weight (within the f32 matmul tolerance, calibrated from ref?acc=f32's noise), embedding of a
// block-type table (bit-exact), blocks at odd byte offsets, and stories260K quantized to each
// legacy type, carved on ref and replayed on the backend. Each test runs once per backend
// (VulkanOrOpenCl/GpuQuant.NAME/vulkan, .../opencl) and skips, saying why, where the build
// lacks that backend or the machine a device for it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/host_call.h"
#include "backend/registry.h"
#include "backends/builtin.h"
#include "carve/corpus.h"
#include "check/oracle.h"
#include "core/dtype.h"
#include "core/quant.h"
#include "model/model_file.h"
#include "replay/replay.h"
#include "support/carve.h"
#include "support/gpu_backends.h"
#include "support/shared.h"

namespace tapml {
namespace {

// The GPU backend of the parameter; the test is skipped, saying why, when it cannot be opened.
class GpuQuant : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { REQUIRE_GPU_BACKEND(GetParam()); }
  Backend& device() { return *testing::gpu_backend(GetParam()); }
};

std::string type_name(DType t) { return std::string(dtype_name(t)); }

// Rows of normal draws, row r scaled by 10^-(r % 9) so that some blocks' f16 scales are
// subnormal halves (below 6.1e-5), quantized row by row with core's quantize_row.
Tensor quantized(DType t, int64_t rows, int64_t cols, std::mt19937& gen) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor q(t, {rows, cols});
  const size_t rb = row_bytes(t, cols);
  std::vector<float> row(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = std::pow(10.0f, -float(r % 9));
    for (float& v : row) v = normal(gen) * scale;
    quantize_row(*block_quant(t), row.data(), q.mutable_bytes() + size_t(r) * rb, cols);
  }
  return q;
}

Tensor activations(int64_t T, int64_t K, std::mt19937& gen) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(T * K));
  for (float& x : v) x = normal(gen);
  return Tensor::from_f32({T, K}, v);
}

// The call as a carve would store it: ref's outputs and the noise floor of ref?acc=f32.
TestCase reference_case(Op op, std::vector<Tensor> inputs) {
  static auto ref = open_backend("ref");
  static auto plain = open_backend(kNoiseReference);
  TestCase t;
  t.op = op;
  t.site = Site::parse("test");
  t.inputs = std::move(inputs);
  t.outputs = run_host_call(*ref, op, {}, t.inputs, "test").outputs;
  calibrate_noise(t, *plain);
  return t;
}

std::string failure(const TestResult& r) { return r.error.empty() ? r.verdict.detail : r.error; }

// K: two lengths per block size (one block and three for the legacy types, one and two
// super-blocks for the K-quants); T 1 and 5 (a full block of 4 token rows and one left over);
// N 67, no multiple of anything the kernel tiles by.
TEST_P(GpuQuant, MatmulOfEveryBlockTypePassesTheOracle) {
  std::mt19937 gen(11);
  TolerancePolicy policy;
  for (DType t : kBlockDTypes) {
    const int64_t b = block_elems(t);
    for (int64_t K : {b == 32 ? int64_t(32) : b, b == 32 ? int64_t(96) : 2 * b})
      for (int64_t T : {1, 5})
        for (int64_t N : {1, 67}) {
          TestCase c =
              reference_case(Op::Matmul, {activations(T, K, gen), quantized(t, N, K, gen)});
          TestResult r = replay_test(device(), c, policy);
          EXPECT_TRUE(r.pass) << type_name(t) << " T=" << T << " K=" << K << " N=" << N << ": "
                              << failure(r);
          // Both backends keep the activations in f32, so they meet the plain f32 tolerance
          // too, without the 8-bit activation allowance replay grants (docs/oracle.md).
          HostCallResult got = run_host_call(device(), Op::Matmul, {}, c.inputs, "test");
          Verdict strict =
              judge(policy, Op::Matmul, K, c.outputs, got.outputs, got.guards_intact, c.noise);
          EXPECT_TRUE(strict.pass)
              << type_name(t) << " T=" << T << " K=" << K << " N=" << N << ": " << strict.detail;
        }
  }
}

// The f32 tolerance is tight enough to see one wrong quantized value: the expected outputs
// of a weight with one element changed by one step (its low bit flipped) fail on the device.
// (The 8-bit activation allowance that replay adds for quantized weights is wider than one
// step of one weight: see "Limits" in docs/oracle.md.)
TEST_P(GpuQuant, OneChangedQuantFailsTheOracle) {
  std::mt19937 gen(12);
  TolerancePolicy policy;
  for (DType t : kBlockDTypes) {
    const int64_t K = block_elems(t) == 32 ? 64 : 256, T = 3, N = 5;
    Tensor x = activations(T, K, gen);
    Tensor w = quantized(t, N, K, gen);
    // Row 0 is unscaled (factor 10^0), so a one-step change there is well above the noise.
    Tensor changed = w.clone();
    std::vector<float> before = w.to_f32();
    for (size_t byte = 0; byte < row_bytes(t, K); ++byte) {
      changed.mutable_bytes()[byte] ^= std::byte{1};
      std::vector<float> after = changed.to_f32();
      int differing = 0;
      for (int64_t k = 0; k < K; ++k) differing += before[size_t(k)] != after[size_t(k)];
      if (differing == 1) break;  // a quant bit, not a scale
      changed.mutable_bytes()[byte] ^= std::byte{1};
    }
    ASSERT_NE(changed.to_f32(), before) << type_name(t) << ": no byte changes one element";
    TestCase c = reference_case(Op::Matmul, {x, changed});
    HostCallResult got = run_host_call(device(), Op::Matmul, {}, {x, w}, "test");
    Verdict strict =
        judge(policy, Op::Matmul, K, c.outputs, got.outputs, got.guards_intact, c.noise);
    EXPECT_FALSE(strict.pass) << type_name(t) << ": a wrong weight passed: " << strict.detail;
  }
}

TEST_P(GpuQuant, EmbeddingOfEveryBlockTypeIsBitExact) {
  std::mt19937 gen(13);
  TolerancePolicy policy;
  auto ref = open_backend("ref");
  for (DType t : kBlockDTypes) {
    const int64_t b = block_elems(t);
    for (int64_t D : {b, b == 32 ? int64_t(96) : 2 * b}) {
      const int64_t V = 23, T = 19;
      std::uniform_int_distribution<int32_t> id(0, int32_t(V) - 1);
      std::vector<int32_t> ids(static_cast<size_t>(T));
      for (int32_t& i : ids) i = id(gen);
      ids[0] = 0, ids[1] = int32_t(V) - 1, ids[2] = 0;
      std::vector<Tensor> in{quantized(t, V, D, gen), Tensor::from_i32({T}, ids)};
      HostCallResult want = run_host_call(*ref, Op::Embedding, {}, in, "test");
      HostCallResult got = run_host_call(device(), Op::Embedding, {}, in, "test");
      ASSERT_EQ(got.outputs.size(), 1u);
      EXPECT_TRUE(got.guards_intact[0]) << type_name(t) << " D=" << D;
      ASSERT_EQ(got.outputs[0].nbytes(), want.outputs[0].nbytes());
      const float* g = got.outputs[0].data<float>();
      const float* w = want.outputs[0].data<float>();
      int64_t first_diff = -1;
      for (int64_t i = 0; i < T * D && first_diff < 0; ++i)
        if (std::memcmp(&g[i], &w[i], 4) != 0) first_diff = i;
      EXPECT_EQ(first_diff, -1) << type_name(t) << " D=" << D << ": element " << first_diff
                                << " (row " << ids[size_t(first_diff / D)] << ", column "
                                << first_diff % D << ") is " << g[first_diff] << ", ref "
                                << w[first_diff];
      TestCase c = reference_case(Op::Embedding, in);
      TestResult r = replay_test(device(), c, policy);
      EXPECT_TRUE(r.pass) << type_name(t) << " D=" << D << ": " << failure(r);
    }
  }
}

// Blocks are read by byte address, so a weight may start at any byte of its buffer.
TEST_P(GpuQuant, BlocksAtOddByteOffsets) {
  Backend& be = device();
  auto ref = open_backend("ref");
  std::mt19937 gen(14);
  for (DType t : {DType::Q4_0, DType::Q3_K, DType::Q6_K}) {
    const int64_t T = 2, K = block_elems(t), N = 3;
    Tensor x = activations(T, K, gen), w = quantized(t, N, K, gen);
    for (size_t offset : {1, 2, 3}) {
      auto run = [&](Backend& b) {
        BufferId bx = b.alloc(x.nbytes()), bw = b.alloc(w.nbytes() + offset),
                 bo = b.alloc(size_t(T * N) * 4);
        b.write(bx, 0, x.bytes(), x.nbytes());
        b.write(bw, offset, w.bytes(), w.nbytes());
        OpCall c{Op::Matmul,
                 {},
                 {{bx, 0, DType::F32, {T, K}}, {bw, offset, t, {N, K}}},
                 {{bo, 0, DType::F32, {T, N}}},
                 "test"};
        Support s = b.supports(c);
        EXPECT_TRUE(s.ok) << s.reason;
        std::vector<float> out(size_t(T * N));
        if (s.ok) {
          b.run(c);
          b.read(bo, 0, out.data(), out.size() * 4);
        }
        b.free(bx), b.free(bw), b.free(bo);
        return out;
      };
      std::vector<float> want = run(*ref), got = run(be);
      float largest = 0;
      for (float v : want) largest = std::max(largest, std::fabs(v));
      for (size_t i = 0; i < want.size(); ++i)
        EXPECT_NEAR(got[i], want[i], 1e-5 * largest) << type_name(t) << " offset " << offset;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(VulkanOrOpenCl, GpuQuant, ::testing::ValuesIn(testing::gpu_backend_uris()),
                         [](const auto& info) { return info.param; });

// stories260K with every matrix whose rows hold whole blocks quantized (the K-quants' 256 do
// not divide its 64-wide rows), carved on ref and replayed on the backend: every test passes,
// and the corpus does hold quantized matmul and embedding tests.
class GpuQuantStories : public ::testing::TestWithParam<std::tuple<std::string, DType>> {};

TEST_P(GpuQuantStories, CarvedOnRefReplays) {
  const auto& [uri, q] = GetParam();
  REQUIRE_GPU_BACKEND(uri);
  ModelFile m = load_model(testing::shared_path("models/stories260K/stories260K.gguf"));
  int quantized_weights = 0;
  for (auto& [name, w] : m.weights)
    if (w.shape().rank() == 2 && w.shape()[1] % block_elems(q) == 0) {
      w = Tensor::from_f32_as(q, w.shape(), w.to_f32());
      ++quantized_weights;
    }
  ASSERT_GE(quantized_weights, 20);

  const std::string path = testing::temp_dir() + "/stories_" + type_name(q) + "_" + uri + ".corpus";
  testing::carve_on_ref(m, path, {1, 403, 407, 261}, 12);
  Corpus corpus = Corpus::open(path);
  TolerancePolicy policy;
  int passed = 0, total = 0, quant_matmuls = 0, quant_embeddings = 0;
  for (const TestInfo& info : corpus.list()) {
    TestCase t = corpus.load(info.id);
    quant_matmuls += t.op == Op::Matmul && t.inputs[1].dtype() == q;
    quant_embeddings += t.op == Op::Embedding && t.inputs[0].dtype() == q;
    TestResult r = replay_test(*testing::gpu_backend(uri), t, policy);
    ++total;
    passed += r.pass;
    EXPECT_TRUE(r.pass) << "#" << info.id << " " << info.op << " " << info.site << ": "
                        << failure(r);
  }
  EXPECT_EQ(passed, total);
  EXPECT_GE(quant_matmuls, 6);
  EXPECT_GE(quant_embeddings, 1);
}

INSTANTIATE_TEST_SUITE_P(VulkanOrOpenCl, GpuQuantStories,
                         ::testing::Combine(::testing::ValuesIn(testing::gpu_backend_uris()),
                                            ::testing::Values(DType::Q8_0, DType::Q4_0, DType::Q4_1,
                                                              DType::Q5_0, DType::Q5_1)),
                         [](const auto& info) {
                           return type_name(std::get<1>(info.param)) + "_" +
                                  std::get<0>(info.param);
                         });

}  // namespace
}  // namespace tapml

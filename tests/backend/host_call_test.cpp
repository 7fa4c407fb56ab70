#include "backend/host_call.h"

#include <gtest/gtest.h>

#include <cmath>

#include "backend/host_backend.h"
#include "backends/builtin.h"
#include "core/error.h"

namespace tapml {
namespace {

// A backend whose add kernel misbehaves in one chosen way.
class BrokenAdd final : public HostBackend {
 public:
  enum class Bug { None, WritesPastTheEnd, WritesBeforeTheStart, SkipsLastElement };
  explicit BrokenAdd(Bug bug) : HostBackend({"broken", "broken", "test"}), bug_(bug) {
    kernels().add(Op::Add, [this](const OpCall& c) { add(c); });
  }

 private:
  void add(const OpCall& c) {
    const float* a = data<float>(c.inputs[0]);
    const float* b = data<float>(c.inputs[1]);
    float* out = data<float>(c.outputs[0]);
    int64_t n = c.inputs[0].shape.numel();
    for (int64_t i = 0; i < n - (bug_ == Bug::SkipsLastElement); ++i) out[i] = a[i] + b[i];
    if (bug_ == Bug::WritesPastTheEnd) out[n] = 1.0f;
    if (bug_ == Bug::WritesBeforeTheStart) out[-1] = 1.0f;
  }

  Bug bug_;
};

const std::vector<Tensor> kAddInputs = {
    Tensor::from_f32({2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6}),
    Tensor::from_f32({2, 3}, std::vector<float>{1, 1, 1, 1, 1, 1})};

TEST(HostCall, CorrectKernelKeepsGuardsAndFillsEveryElement) {
  BrokenAdd ok(BrokenAdd::Bug::None);
  HostCallResult r = run_host_call(ok, Op::Add, {}, kAddInputs);
  ASSERT_EQ(r.outputs.size(), 1u);
  EXPECT_TRUE(r.guards_intact[0]);
  EXPECT_EQ(r.outputs[0].to_f32(), (std::vector<float>{2, 3, 4, 5, 6, 7}));
}

TEST(HostCall, OutOfBoundsWritesBreakTheGuards) {
  for (auto bug : {BrokenAdd::Bug::WritesPastTheEnd, BrokenAdd::Bug::WritesBeforeTheStart}) {
    BrokenAdd broken(bug);
    EXPECT_FALSE(run_host_call(broken, Op::Add, {}, kAddInputs).guards_intact[0]);
  }
}

TEST(HostCall, UnwrittenOutputElementsStayNaN) {
  BrokenAdd broken(BrokenAdd::Bug::SkipsLastElement);
  HostCallResult r = run_host_call(broken, Op::Add, {}, kAddInputs);
  EXPECT_TRUE(r.guards_intact[0]);
  EXPECT_TRUE(std::isnan(r.outputs[0].data<float>()[5]));
  EXPECT_EQ(r.outputs[0].data<float>()[4], 6.0f);
}

TEST(HostCall, InPlaceOutputsReturnTheOverwrittenInput) {
  auto cpu = open_backend("cpu?threads=1");
  std::vector<float> zeros(4 * 2, 0.0f);
  std::vector<Tensor> in = {Tensor::from_f32({4, 2}, zeros), Tensor::from_f32({4, 2}, zeros),
                            Tensor::from_f32({1, 2}, std::vector<float>{7, 8}),
                            Tensor::from_f32({1, 2}, std::vector<float>{9, 10}),
                            Tensor::from_i32({1}, std::vector<int32_t>{2})};
  HostCallResult r = run_host_call(*cpu, Op::KvStore, {}, in);
  ASSERT_EQ(r.outputs.size(), 2u);
  EXPECT_EQ(r.outputs[0].to_f32(), (std::vector<float>{0, 0, 0, 0, 7, 8, 0, 0}));
  EXPECT_EQ(r.outputs[1].to_f32(), (std::vector<float>{0, 0, 0, 0, 9, 10, 0, 0}));
  EXPECT_TRUE(r.guards_intact[0] && r.guards_intact[1]);
}

TEST(HostCall, BadCallsAreErrors) {
  auto cpu = open_backend("cpu?threads=1");
  EXPECT_THROW(run_host_call(*cpu, Op::Add, {}, {kAddInputs[0]}), Error);
  // An op the backend has no kernel for is refused with the reason, before anything runs.
  BrokenAdd only_add(BrokenAdd::Bug::None);
  std::vector<Tensor> mm = {Tensor::from_f32({1, 3}, std::vector<float>{1, 2, 3}),
                            Tensor::from_f32({2, 3}, std::vector<float>{1, 1, 1, 2, 2, 2})};
  try {
    run_host_call(only_add, Op::Matmul, {}, mm);
    ADD_FAILURE() << "a matmul ran on a backend without a matmul kernel";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no kernel for matmul"), std::string::npos) << e.what();
  }
}

TEST(HostBackend, AFreedBufferIdStaysUnknownWhenItsSlotIsReused) {
  BrokenAdd b(BrokenAdd::Bug::None);
  const float one = 1.0f;
  BufferId first = b.alloc(64);
  b.free(first);
  BufferId second = b.alloc(64);  // takes the freed slot
  EXPECT_NE(second, first);
  EXPECT_NE(second, BufferId(0));
  EXPECT_THROW(b.write(first, 0, &one, sizeof one), Error);
  EXPECT_THROW(b.free(first), Error);
  b.write(second, 0, &one, sizeof one);
  float back = 0;
  b.read(second, 0, &back, sizeof back);
  EXPECT_EQ(back, 1.0f);
  // Ids that were never handed out, the slot bits of a live id with another generation.
  for (BufferId bad : {BufferId(0), BufferId(77), second + (BufferId(5) << 32)})
    EXPECT_THROW(b.read(bad, 0, &back, sizeof back), Error) << bad;
  EXPECT_EQ(b.bytes_allocated(), size_t(64));
  b.free(second);
  EXPECT_EQ(b.bytes_allocated(), size_t(0));
}

TEST(HostBackend, FreedBuffersAreReusedAndHeldOnlyUpToTheLivePeak) {
  BrokenAdd b(BrokenAdd::Bug::None);
  constexpr size_t kMiB = size_t(1) << 20;
  // Not touched, so never faulted in: only the bookkeeping is exercised.
  BufferId big = b.alloc(300 * kMiB), small = b.alloc(kMiB);
  EXPECT_EQ(b.bytes_held(), 301 * kMiB);
  b.free(big);
  b.free(small);
  EXPECT_EQ(b.bytes_held(), 301 * kMiB);  // both kept: within the peak
  big = b.alloc(300 * kMiB);              // the same size again: the kept one
  EXPECT_EQ(b.bytes_held(), 301 * kMiB);
  b.free(big);
  // Another size: spares go until live + spare + the new one fit the peak (301 MiB).
  BufferId other = b.alloc(200 * kMiB);
  EXPECT_LE(b.bytes_held(), 301 * kMiB);
  EXPECT_GE(b.bytes_held(), 200 * kMiB);
  b.free(other);
  EXPECT_LE(b.bytes_held(), 301 * kMiB);
  EXPECT_EQ(b.bytes_allocated(), size_t(0));
}

TEST(RefBackend, F32AccumulationIsCloseButNotTheSame) {
  auto ref = open_backend("ref");
  auto f32 = open_backend("ref?acc=f32");
  const int64_t K = 4096;
  std::vector<float> x(K), w(K);
  for (int64_t i = 0; i < K; ++i)
    x[size_t(i)] = std::sin(0.37f * float(i)), w[size_t(i)] = std::cos(0.11f * float(i)) + 0.5f;
  std::vector<Tensor> in = {Tensor::from_f32({1, K}, x), Tensor::from_f32({1, K}, w)};
  float a = run_host_call(*ref, Op::Matmul, {}, in).outputs[0].data<float>()[0];
  float b = run_host_call(*f32, Op::Matmul, {}, in).outputs[0].data<float>()[0];
  EXPECT_NE(a, b);
  EXPECT_NEAR(a, b, 1e-3 * std::fabs(a) + 1e-3);
  EXPECT_THROW(open_backend("ref?acc=f16"), Error);
  EXPECT_THROW(open_backend("ref:0"), Error);
}

}  // namespace
}  // namespace tapml

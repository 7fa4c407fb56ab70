// A quantized model end to end on ref: stories260K's matrices quantized (ggml's reference
// quantizers) and written as a GGUF must give the logits of the same model with those blocks
// dequantized to f32, since ref dequantizes each row exactly and then runs the f32 op.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "backend/registry.h"
#include "core/error.h"
#include "format/gguf.h"
#include "model/model_file.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/errors.h"
#include "support/shared.h"

namespace tapml {
namespace {

// Copies `src` into `path` with every 2-D tensor whose rows hold whole blocks of `q` stored as
// `q` (dequantized back to f32 when `dequantized`), the way llama-quantize falls back to f32
// for rows it cannot block. Returns how many tensors were quantized.
int write_quantized(const gguf::File& src, DType q, bool dequantized, const std::string& path) {
  gguf::Writer w;
  for (const auto& [k, v] : src.metadata())
    if (k != "general.alignment") w.set(k, v);
  int n = 0;
  for (const gguf::TensorInfo& ti : src.tensors()) {
    Tensor t = src.tensor(ti.name);
    if (t.shape().rank() == 2 && t.shape()[1] % block_elems(q) == 0) {
      Tensor blocks = Tensor::from_f32_as(q, t.shape(), t.to_f32());
      t = dequantized ? Tensor::from_f32(t.shape(), blocks.to_f32()) : blocks;
      ++n;
    }
    w.add_tensor(ti.name, t);
  }
  w.write(path);
  return n;
}

GenerateResult run(const std::string& model_path, const std::string& backend) {
  ModelFile m = load_model(model_path);
  Session session(m, Placement(backend));
  GenerateOptions o;
  o.steps = 24;
  o.keep_logits = true;
  return generate(session, {1, 403, 407, 261}, o);
}

// The 32-element block types; stories260K's rows (64 wide) cannot hold the K-quants' 256.
class QuantizedStories : public ::testing::TestWithParam<DType> {};

TEST_P(QuantizedStories, OnRefGivesTheDequantizedModelsLogits) {
  const DType q = GetParam();
  gguf::File src = gguf::File::open(testing::shared_path("models/stories260K/stories260K.gguf"));
  const std::string dir = testing::temp_dir(), name(dtype_name(q));
  const std::string blocks = dir + "/s_" + name + ".gguf", f32 = dir + "/s_" + name + "_f32.gguf";
  const int quantized = write_quantized(src, q, false, blocks);
  EXPECT_EQ(write_quantized(src, q, true, f32), quantized);
  EXPECT_GE(quantized, 20);  // token_embd and the attention matrices at least

  ModelFile m = load_model(blocks);
  EXPECT_EQ(m.weights.at("token_embd.weight").dtype(), q);
  EXPECT_EQ(m.weights.at("blk.0.attn_q.weight").dtype(), q);

  GenerateResult a = run(blocks, "ref"), b = run(f32, "ref");
  EXPECT_EQ(a.token_ids, b.token_ids);
  ASSERT_EQ(a.logits.size(), b.logits.size());
  ASSERT_FALSE(a.logits.empty());
  float largest = 0, worst = 0;
  for (size_t i = 0; i < a.logits.size(); ++i) {
    largest = std::max(largest, std::fabs(b.logits[i]));
    worst = std::max(worst, std::fabs(a.logits[i] - b.logits[i]));
  }
  // The same f64 sums over the same f32 values: equal but for summation-order noise.
  EXPECT_LE(worst, 1e-6f * largest);
  EXPECT_GT(largest, 1.0f);
}

INSTANTIATE_TEST_SUITE_P(LegacyBlocks, QuantizedStories,
                         ::testing::Values(DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                           DType::Q5_1),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// cpu quantizes the activations to 8 bits as ggml does (docs/oracle.md), so its logits
// differ from ref's by about what llama.cpp's do (1-2.5% of the largest logit measured on
// these files), not by f32 rounding; the greedy tokens of this prompt still agree.
TEST(QuantizedModel, CpuRunsItWithEightBitActivations) {
  gguf::File src = gguf::File::open(testing::shared_path("models/stories260K/stories260K.gguf"));
  for (DType d : {DType::Q8_0, DType::Q4_0}) {
    const std::string q = testing::temp_dir() + "/s_cpu_" + std::string(dtype_name(d)) + ".gguf";
    write_quantized(src, d, false, q);
    GenerateResult a = run(q, "cpu"), b = run(q, "ref");
    EXPECT_EQ(a.token_ids, b.token_ids) << dtype_name(d);
    ASSERT_EQ(a.logits.size(), b.logits.size());
    float largest = 0, worst = 0;
    for (size_t i = 0; i < a.logits.size(); ++i) {
      largest = std::max(largest, std::fabs(b.logits[i]));
      worst = std::max(worst, std::fabs(a.logits[i] - b.logits[i]));
    }
    EXPECT_LE(worst, 0.03f * largest) << dtype_name(d);
    EXPECT_GT(worst, 1e-5f * largest) << dtype_name(d) << ": the activations were not quantized";
  }
}

}  // namespace
}  // namespace tapml

#include "ops/op.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace tapml {
namespace {

std::vector<TensorType> infer(const std::string& op, std::vector<TensorType> in,
                              const Attrs& a = {}) {
  return op_def(op).infer(in, a);
}

TEST(OpCatalog, EveryOpDeclaresItsShape) {
  for (const OpDef& d : all_ops()) {
    EXPECT_EQ(d.outputs.size(), d.inplace_of.size()) << d.name;
    EXPECT_NE(d.infer, nullptr) << d.name;
    EXPECT_NE(d.reduction_length, nullptr) << d.name;
  }
  EXPECT_THROW(op_def("softmax"), Error);
}

TEST(OpCatalog, MatmulTakesWeightsOfEveryFloatType) {
  for (DType w : {DType::F32, DType::F16, DType::BF16}) {
    auto out = infer("matmul", {{DType::F32, {3, 64}}, {w, {48, 64}}});
    EXPECT_EQ(out[0].shape, (Shape{3, 48}));
    EXPECT_EQ(out[0].dtype, DType::F32);
  }
  EXPECT_THROW(infer("matmul", {{DType::F32, {3, 64}}, {DType::F32, {48, 32}}}), Error);
  EXPECT_THROW(infer("matmul", {{DType::F16, {3, 64}}, {DType::F32, {48, 64}}}), Error);
  EXPECT_THROW(infer("matmul", {{DType::F32, {3, 64}}, {DType::I32, {48, 64}}}), Error);
}

TEST(OpCatalog, KvStoreWritesTheCachesInPlace) {
  const OpDef& d = op_def("kv_store");
  EXPECT_EQ(d.inplace_of, (std::vector<int>{0, 1}));
  auto out = infer("kv_store", {{DType::F32, {16, 8}},
                                {DType::F32, {16, 8}},
                                {DType::F32, {3, 8}},
                                {DType::F32, {3, 8}},
                                {DType::I32, {1}}});
  EXPECT_EQ(out[0].shape, (Shape{16, 8}));
  EXPECT_THROW(infer("kv_store", {{DType::F32, {2, 8}},
                                  {DType::F32, {2, 8}},
                                  {DType::F32, {3, 8}},
                                  {DType::F32, {3, 8}},
                                  {DType::I32, {1}}}),
               Error);
}

TEST(OpCatalog, AttentionChecksGroupedHeads) {
  Attrs a{{"n_heads", 8}, {"n_kv_heads", 4}, {"head_dim", 8}, {"scale", 0.35}};
  auto out =
      infer("attention", {{DType::F32, {2, 64}}, {DType::F32, {5, 32}}, {DType::F32, {5, 32}}}, a);
  EXPECT_EQ(out[0].shape, (Shape{2, 64}));
  EXPECT_EQ(op_def("attention")
                .reduction_length(
                    std::vector<TensorType>{
                        {DType::F32, {2, 64}}, {DType::F32, {5, 32}}, {DType::F32, {5, 32}}},
                    a),
            40);
  Attrs bad{{"n_heads", 8}, {"n_kv_heads", 3}, {"head_dim", 8}, {"scale", 0.35}};
  EXPECT_THROW(infer("attention",
                     {{DType::F32, {2, 64}}, {DType::F32, {5, 24}}, {DType::F32, {5, 24}}}, bad),
               Error);
  // more query rows than keys cannot be causal attention over a cache prefix
  EXPECT_THROW(
      infer("attention", {{DType::F32, {6, 64}}, {DType::F32, {5, 32}}, {DType::F32, {5, 32}}}, a),
      Error);
}

TEST(OpCatalog, RopeChecksItsAttributes) {
  Attrs a{{"n_heads", 2}, {"head_dim", 8}, {"rope_dim", 8}, {"base", 10000}, {"pairing", 0}};
  EXPECT_NO_THROW(infer("rope", {{DType::F32, {3, 16}}, {DType::I32, {3}}}, a));
  Attrs odd = a;
  odd.set("rope_dim", 7);
  EXPECT_THROW(infer("rope", {{DType::F32, {3, 16}}, {DType::I32, {3}}}, odd), Error);
  Attrs pairing = a;
  pairing.set("pairing", 2);
  EXPECT_THROW(infer("rope", {{DType::F32, {3, 16}}, {DType::I32, {3}}}, pairing), Error);
  EXPECT_THROW(infer("rope", {{DType::F32, {3, 16}}, {DType::I32, {3}}}, Attrs{}), Error);
}

TEST(Dtype, HalfConversionsRoundTrip) {
  for (float x : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333251953125f})
    EXPECT_EQ(f16_to_f32(f32_to_f16(x)), x) << x;
  EXPECT_EQ(f32_to_f16(70000.0f), 0x7c00);            // overflow to +Inf
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 4096), 0x3c00);  // ties round to even
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(3.140625f)), 3.140625f);
  EXPECT_EQ(dtype_from_name("bf16"), DType::BF16);
  EXPECT_THROW(dtype_from_name("q4_0"), Error);
}

}  // namespace
}  // namespace tapml

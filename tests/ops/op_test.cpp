#include "ops/op.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "core/error.h"
#include "core/tensor.h"

namespace tapml {
namespace {

std::vector<TensorType> infer(Op op, std::vector<TensorType> in, const Attrs& a = {}) {
  return infer_outputs(op, in, a);
}

TEST(OpCatalog, EveryOpDeclaresItsShapeAndExamples) {
  ASSERT_EQ(all_ops().size(), kOpCount);
  for (const OpDef& d : all_ops()) {
    EXPECT_EQ(&op_def(d.op), &d) << d.name;
    EXPECT_EQ(d.outputs.size(), d.inplace_of.size()) << d.name;
    EXPECT_EQ(d.inputs.size(), d.input_dtypes.size()) << d.name;
    EXPECT_NE(d.infer, nullptr) << d.name;
    EXPECT_NE(d.reduction_length, nullptr) << d.name;
    ASSERT_NE(d.examples, nullptr) << d.name;
    // Every example of every dtype combination is a valid call of the op.
    for (const std::vector<DType>& combo : dtype_combinations(d)) {
      std::mt19937_64 rng(1);
      std::vector<OpExample> examples = d.examples(combo, rng);
      EXPECT_GE(examples.size(), 2u) << d.name;
      for (const OpExample& e : examples) {
        std::vector<TensorType> in;
        for (const Tensor& t : e.inputs) in.push_back({t.dtype(), t.shape()});
        for (size_t i = 0; i < in.size() && i < combo.size(); ++i)
          EXPECT_EQ(in[i].dtype, combo[i]) << d.name << " " << e.label;
        EXPECT_NO_THROW(infer_outputs(d.op, in, e.attrs)) << d.name << " " << e.label;
      }
    }
  }
}

TEST(OpCatalog, NamesAppearOnlyAtTheEdges) {
  for (const OpDef& d : all_ops()) {
    EXPECT_EQ(parse_op(d.name), d.op);
    EXPECT_EQ(op_name(d.op), d.name);
  }
  EXPECT_EQ(find_op("softmax"), std::nullopt);
  try {
    parse_op("softmax");
    ADD_FAILURE() << "an unknown op name was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown op 'softmax' (known: embedding"),
              std::string::npos)
        << e.what();
  }
}

TEST(OpCatalog, ValidationNamesTheOpAndTheProblem) {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  std::vector<TensorType> in{{DType::F32, {3, 64}}, {DType::F16, {48, 64}}};
  std::vector<TensorType> out{{DType::F32, {3, 48}}};
  EXPECT_NO_THROW(validate_types(Op::Matmul, in, {}, out));
  EXPECT_EQ(message([&] {
              validate_types(Op::Matmul, in, {{"alpha", 2}}, out);
            }),
            "matmul: unknown attribute 'alpha'");
  std::vector<TensorType> wrong{{DType::F32, {3, 47}}};
  EXPECT_EQ(message([&] { validate_types(Op::Matmul, in, {}, wrong); }),
            "matmul: output out is f32 [3, 47], the op gives f32 [3, 48]");
  EXPECT_EQ(message([&] {
              infer(Op::RmsNorm, {{DType::F32, {2, 4}}, {DType::F32, {4}}});
            }),
            "rmsnorm: missing attribute 'eps'");
  EXPECT_EQ(message([&] {
              infer(Op::Matmul, {{DType::F32, {3, 64}}, {DType::I32, {48, 64}}});
            }),
            "matmul: w must be f32, f16 or bf16, got i32 [48, 64]");
}

TEST(OpCatalog, DtypeCombinationsCoverEveryWeightType) {
  std::vector<std::vector<DType>> combos = dtype_combinations(op_def(Op::Matmul));
  ASSERT_EQ(combos.size(), 3u);
  EXPECT_EQ(combos[1], (std::vector<DType>{DType::F32, DType::F16}));
  EXPECT_EQ(dtype_combinations(op_def(Op::Add)).size(), 1u);
}

TEST(OpCatalog, MatmulTakesWeightsOfEveryFloatType) {
  for (DType w : {DType::F32, DType::F16, DType::BF16}) {
    auto out = infer(Op::Matmul, {{DType::F32, {3, 64}}, {w, {48, 64}}});
    EXPECT_EQ(out[0].shape, (Shape{3, 48}));
    EXPECT_EQ(out[0].dtype, DType::F32);
  }
  EXPECT_THROW(infer(Op::Matmul, {{DType::F32, {3, 64}}, {DType::F32, {48, 32}}}), Error);
  EXPECT_THROW(infer(Op::Matmul, {{DType::F16, {3, 64}}, {DType::F32, {48, 64}}}), Error);
  EXPECT_THROW(infer(Op::Matmul, {{DType::F32, {3, 64}}, {DType::I32, {48, 64}}}), Error);
}

TEST(OpCatalog, KvStoreWritesTheCachesInPlace) {
  const OpDef& d = op_def(Op::KvStore);
  EXPECT_EQ(d.inplace_of, (std::vector<int>{0, 1}));
  auto out = infer(Op::KvStore, {{DType::F32, {16, 8}},
                                 {DType::F32, {16, 8}},
                                 {DType::F32, {3, 8}},
                                 {DType::F32, {3, 8}},
                                 {DType::I32, {1}}});
  EXPECT_EQ(out[0].shape, (Shape{16, 8}));
  EXPECT_THROW(infer(Op::KvStore, {{DType::F32, {2, 8}},
                                   {DType::F32, {2, 8}},
                                   {DType::F32, {3, 8}},
                                   {DType::F32, {3, 8}},
                                   {DType::I32, {1}}}),
               Error);
}

TEST(OpCatalog, AttentionChecksGroupedHeads) {
  Attrs a{{"n_heads", 8}, {"n_kv_heads", 4}, {"head_dim", 8}, {"scale", 0.35}};
  auto out = infer(Op::Attention,
                   {{DType::F32, {2, 64}}, {DType::F32, {5, 32}}, {DType::F32, {5, 32}}}, a);
  EXPECT_EQ(out[0].shape, (Shape{2, 64}));
  EXPECT_EQ(op_def(Op::Attention)
                .reduction_length(
                    std::vector<TensorType>{
                        {DType::F32, {2, 64}}, {DType::F32, {5, 32}}, {DType::F32, {5, 32}}},
                    a),
            40);
  Attrs bad{{"n_heads", 8}, {"n_kv_heads", 3}, {"head_dim", 8}, {"scale", 0.35}};
  EXPECT_THROW(infer(Op::Attention,
                     {{DType::F32, {2, 64}}, {DType::F32, {5, 24}}, {DType::F32, {5, 24}}}, bad),
               Error);
  // more query rows than keys cannot be causal attention over a cache prefix
  EXPECT_THROW(infer(Op::Attention,
                     {{DType::F32, {6, 64}}, {DType::F32, {5, 32}}, {DType::F32, {5, 32}}}, a),
               Error);
}

TEST(OpCatalog, RopeChecksItsAttributes) {
  Attrs a{{"n_heads", 2}, {"head_dim", 8}, {"rope_dim", 8}, {"base", 10000}, {"pairing", 0}};
  EXPECT_NO_THROW(infer(Op::Rope, {{DType::F32, {3, 16}}, {DType::I32, {3}}}, a));
  Attrs odd = a;
  odd.set("rope_dim", 7);
  EXPECT_THROW(infer(Op::Rope, {{DType::F32, {3, 16}}, {DType::I32, {3}}}, odd), Error);
  Attrs pairing = a;
  pairing.set("pairing", 2);
  EXPECT_THROW(infer(Op::Rope, {{DType::F32, {3, 16}}, {DType::I32, {3}}}, pairing), Error);
  EXPECT_THROW(infer(Op::Rope, {{DType::F32, {3, 16}}, {DType::I32, {3}}}, Attrs{}), Error);
}

TEST(OpCatalog, GeluKeepsTheShapeAndTakesApprox0Or1) {
  for (double approx : {0.0, 1.0}) {
    auto out = infer(Op::Gelu, {{DType::F32, {3, 67}}}, {{"approx", approx}});
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].shape, (Shape{3, 67}));
    EXPECT_EQ(out[0].dtype, DType::F32);
  }
  for (double bad : {2.0, -1.0, 0.5})
    EXPECT_THROW(infer(Op::Gelu, {{DType::F32, {3, 8}}}, {{"approx", bad}}), Error) << bad;
  EXPECT_THROW(infer(Op::Gelu, {{DType::F32, {3, 8}}}), Error);  // approx has no default
  EXPECT_THROW(infer(Op::Gelu, {{DType::F32, {24}}}, {{"approx", 0}}), Error);
  EXPECT_THROW(infer(Op::Gelu, {{DType::F16, {3, 8}}}, {{"approx", 0}}), Error);
  const OpDef& d = op_def(Op::Gelu);
  EXPECT_EQ(d.inplace_of, (std::vector<int>{-1}));
  EXPECT_EQ(d.reduction_length(std::vector<TensorType>{{DType::F32, {3, 67}}}, {{"approx", 0}}), 1);
}

TEST(OpCatalog, GeluExamplesTryBothFormsInTheNegativeTail) {
  // A kernel that forms 1 + erf or 1 + tanh is right wherever some x is positive (the error
  // is small against the output's scale) and wrong on a tensor that lies in the negative
  // tail; the conformance suite sees that only if an example of each form lies there.
  std::mt19937_64 rng(1);
  std::set<int64_t> forms, forms_in_tail;
  for (const OpExample& e : op_def(Op::Gelu).examples(std::vector<DType>{DType::F32}, rng)) {
    const int64_t approx = e.attrs.get_int("approx");
    forms.insert(approx);
    const Tensor& x = e.inputs.at(0);
    const float* v = x.data<float>();
    if (*std::max_element(v, v + x.numel()) <= -4 && *std::min_element(v, v + x.numel()) <= -25)
      forms_in_tail.insert(approx);
  }
  EXPECT_EQ(forms, (std::set<int64_t>{0, 1}));
  EXPECT_EQ(forms_in_tail, (std::set<int64_t>{0, 1}));
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

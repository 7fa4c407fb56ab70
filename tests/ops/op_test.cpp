#include "ops/op.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
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
            "matmul: w must be f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k, q4_k, "
            "q5_k or q6_k, got i32 [48, 64]");
  // A block-type weight's rows are whole blocks.
  EXPECT_NO_THROW(infer(Op::Matmul, {{DType::F32, {3, 64}}, {DType::Q8_0, {48, 64}}}));
  EXPECT_EQ(message([&] {
              infer(Op::Matmul, {{DType::F32, {3, 64}}, {DType::Q4_K, {48, 64}}});
            }),
            "matmul: w q4_k [48, 64]: rows of 256-element blocks need a last dimension that is "
            "a multiple of 256");
  EXPECT_EQ(message([&] {
              infer(Op::Embedding, {{DType::Q4_0, {10, 48}}, {DType::I32, {2}}});
            }),
            "embedding: table q4_0 [10, 48]: rows of 32-element blocks need a last dimension "
            "that is a multiple of 32");
  EXPECT_EQ(message([&] {
              infer(Op::RmsNorm, {{DType::F32, {2, 64}}, {DType::Q8_0, {64}}}, {{"eps", 1e-5}});
            }),
            "rmsnorm: weight must be f32, f16 or bf16, got q8_0 [64]");
}

TEST(OpCatalog, DtypeCombinationsCoverEveryWeightType) {
  std::vector<std::vector<DType>> combos = dtype_combinations(op_def(Op::Matmul));
  ASSERT_EQ(combos.size(), 3u + std::size(kBlockDTypes));
  EXPECT_EQ(combos[1], (std::vector<DType>{DType::F32, DType::F16}));
  EXPECT_EQ(combos.back(), (std::vector<DType>{DType::F32, DType::Q6_K}));
  EXPECT_EQ(dtype_combinations(op_def(Op::Embedding)).size(), 3u + std::size(kBlockDTypes));
  EXPECT_EQ(dtype_combinations(op_def(Op::RmsNorm)).size(), 3u);
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

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// infer's error for a call, which must name the op.
std::string refusal(Op op, std::vector<TensorType> in, const Attrs& a = {}) {
  std::string m = message_of([&] { infer(op, in, a); });
  EXPECT_EQ(m.rfind(std::string(op_name(op)) + ": ", 0), 0u) << m;
  return m;
}

const DType F32 = DType::F32;

TEST(Attrs, GetOrGivesTheFallbackOnlyWhenAbsent) {
  Attrs a{{"window", 0}, {"scale", 0.5}};
  EXPECT_EQ(a.get_or("window", 7), 0);
  EXPECT_EQ(a.get_or("scale", 1), 0.5);
  EXPECT_EQ(a.get_or("softcap", 3.5), 3.5);
  EXPECT_FALSE(a.has("softcap"));  // get_or adds nothing
}

TEST(OpCatalog, OptionalInputsMayBeLeftOut) {
  const OpDef& d = op_def(Op::Rope);
  EXPECT_EQ(d.inputs.size(), 3u);
  EXPECT_EQ(d.required_inputs(), 2u);
  EXPECT_TRUE(d.input_is_optional(2));
  EXPECT_FALSE(d.input_is_optional(1));
  Attrs a{{"n_heads", 2}, {"head_dim", 8}, {"rope_dim", 6}, {"base", 10000}, {"pairing", 0}};
  EXPECT_NO_THROW(infer(Op::Rope, {{F32, {3, 16}}, {DType::I32, {3}}}, a));
  EXPECT_NO_THROW(infer(Op::Rope, {{F32, {3, 16}}, {DType::I32, {3}}, {F32, {3}}}, a));
  EXPECT_EQ(refusal(Op::Rope, {{F32, {3, 16}}, {DType::I32, {3}}, {F32, {4}}}, a),
            "rope: freq_factors must be [rope_dim/2] = [3], got f32 [4]");
  EXPECT_EQ(refusal(Op::Rope, {{F32, {3, 16}}, {DType::I32, {3}}, {DType::I32, {3}}}, a),
            "rope: freq_factors must be f32, got i32 [3]");
  EXPECT_EQ(refusal(Op::Rope, {{F32, {3, 16}}}, a), "rope: takes 2 to 3 inputs, got 1");
  EXPECT_EQ(refusal(Op::Rope, {{F32, {3, 16}}, {DType::I32, {3}}, {F32, {3}}, {F32, {3}}}, a),
            "rope: takes 2 to 3 inputs, got 4");
  // An op without optional inputs still says one number.
  EXPECT_EQ(refusal(Op::Add, {{F32, {3, 16}}}), "add: takes 2 inputs, got 1");
  // The combinations include the optional input; a call without it has a prefix of one.
  EXPECT_EQ(dtype_combinations(d), (std::vector<std::vector<DType>>{{F32, DType::I32, F32}}));
  // Every op's optional inputs and attributes come last and nothing writes into them.
  for (const OpDef& op : all_ops())
    for (int alias : op.inplace_of) EXPECT_LT(alias, int(op.required_inputs())) << op.name;
}

TEST(OpCatalog, RopeExamplesComeWithAndWithoutFreqFactors) {
  std::mt19937_64 rng(1);
  std::set<size_t> counts;
  for (const OpExample& e :
       op_def(Op::Rope).examples(std::vector<DType>{F32, DType::I32, F32}, rng))
    counts.insert(e.inputs.size());
  EXPECT_EQ(counts, (std::set<size_t>{2, 3}));
}

TEST(OpCatalog, AttentionWithoutWindowOrSoftcapIsUnchanged) {
  const OpDef& d = op_def(Op::Attention);
  EXPECT_EQ(d.optional_attrs, 2);
  EXPECT_TRUE(d.attr_is_optional("window"));
  EXPECT_TRUE(d.attr_is_optional("softcap"));
  EXPECT_FALSE(d.attr_is_optional("scale"));
  std::vector<TensorType> in{{F32, {2, 64}}, {F32, {50, 32}}, {F32, {50, 32}}};
  Attrs a{{"n_heads", 8}, {"n_kv_heads", 4}, {"head_dim", 8}, {"scale", 0.35}};
  EXPECT_EQ(infer(Op::Attention, in, a)[0].shape, (Shape{2, 64}));
  EXPECT_EQ(d.reduction_length(in, a), 50 * 8);
  // The attributes are still required.
  EXPECT_EQ(refusal(Op::Attention, in, Attrs{{"n_heads", 8}, {"n_kv_heads", 4}, {"head_dim", 8}}),
            "attention: missing attribute 'scale'");
  Attrs windowed = a;
  windowed.set("window", 16);
  EXPECT_EQ(d.reduction_length(in, windowed), 16 * 8);
  windowed.set("window", 4096);
  EXPECT_EQ(d.reduction_length(in, windowed), 50 * 8);
  windowed.set("window", 0);
  EXPECT_EQ(d.reduction_length(in, windowed), 50 * 8);
  windowed.set("softcap", 50);
  EXPECT_NO_THROW(infer(Op::Attention, in, windowed));
  for (double bad : {-1.0, 2.5, double(INFINITY)}) {
    Attrs w = a;
    w.set("window", bad);
    EXPECT_EQ(refusal(Op::Attention, in, w),
              "attention: window must be a non-negative integer (0: none)")
        << bad;
  }
  for (double bad : {-1.0, double(INFINITY), double(NAN)}) {
    Attrs w = a;
    w.set("softcap", bad);
    EXPECT_EQ(refusal(Op::Attention, in, w),
              "attention: softcap must be finite and non-negative (0: none)")
        << bad;
  }
  // Examples: the first eight are those attention always had, without the new attributes.
  std::mt19937_64 rng(1);
  std::vector<OpExample> ex = d.examples(std::vector<DType>{F32, F32, F32}, rng);
  ASSERT_GT(ex.size(), 8u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(ex[i].attrs.items().size(), 4u) << ex[i].label;
  bool window_below_prefix = false, softcap = false;
  for (const OpExample& e : ex) {
    const double w = e.attrs.get_or("window", 0);
    window_below_prefix |= w > 0 && w < double(e.inputs[1].shape()[0]);
    softcap |= e.attrs.get_or("softcap", 0) > 0;
  }
  EXPECT_TRUE(window_below_prefix);
  EXPECT_TRUE(softcap);
}

TEST(OpCatalog, ElementwiseOpsCheckTheirShapes) {
  EXPECT_EQ(infer(Op::Bias, {{F32, {3, 67}}, {F32, {67}}})[0].shape, (Shape{3, 67}));
  EXPECT_EQ(refusal(Op::Bias, {{F32, {3, 67}}, {F32, {3, 67}}}),
            "bias: b f32 [3, 67] does not fit x f32 [3, 67]");
  EXPECT_EQ(refusal(Op::Bias, {{F32, {3, 67}}, {DType::F16, {67}}}),
            "bias: b must be f32, got f16 [67]");
  EXPECT_EQ(infer(Op::Mul, {{F32, {3, 5}}, {F32, {3, 5}}})[0].shape, (Shape{3, 5}));
  EXPECT_EQ(refusal(Op::Mul, {{F32, {3, 5}}, {F32, {5}}}),
            "mul: a f32 [3, 5] and b f32 [5] differ in shape");
  EXPECT_EQ(refusal(Op::Mul, {{F32, {15}}, {F32, {15}}}), "mul: a must be a matrix, got f32 [15]");
  EXPECT_EQ(infer(Op::Scale, {{F32, {2, 9}}}, {{"s", -0.5}})[0].shape, (Shape{2, 9}));
  EXPECT_EQ(refusal(Op::Scale, {{F32, {2, 9}}}, {{"s", INFINITY}}), "scale: s must be finite");
  EXPECT_EQ(refusal(Op::Scale, {{F32, {2, 9}}}), "scale: missing attribute 's'");
  EXPECT_EQ(infer(Op::Softcap, {{F32, {2, 9}}}, {{"cap", 30}})[0].shape, (Shape{2, 9}));
  for (double bad : {0.0, -30.0, double(INFINITY)})
    EXPECT_EQ(refusal(Op::Softcap, {{F32, {2, 9}}}, {{"cap", bad}}),
              "softcap: cap must be positive and finite")
        << bad;
  EXPECT_EQ(infer(Op::SigmoidGate, {{F32, {4, 9}}, {F32, {4, 1}}})[0].shape, (Shape{4, 9}));
  EXPECT_EQ(refusal(Op::SigmoidGate, {{F32, {4, 9}}, {F32, {4}}}),
            "sigmoid_gate: g must be [T, 1] with the rows of x f32 [4, 9], got f32 [4]");
  EXPECT_EQ(refusal(Op::SigmoidGate, {{F32, {4, 9}}, {F32, {3, 1}}}),
            "sigmoid_gate: g must be [T, 1] with the rows of x f32 [4, 9], got f32 [3, 1]");
  for (Op op : {Op::Bias, Op::Mul, Op::Scale, Op::Softcap, Op::SigmoidGate}) {
    EXPECT_EQ(op_def(op).inplace_of, (std::vector<int>{-1})) << op;
    EXPECT_FALSE(op_def(op).tolerance.exact) << op;
  }
}

TEST(OpCatalog, LayerNormChecksWeightAndEps) {
  std::vector<TensorType> in{{F32, {3, 40}}, {F32, {40}}};
  EXPECT_EQ(infer(Op::LayerNorm, in, {{"eps", 1e-5}})[0].shape, (Shape{3, 40}));
  EXPECT_EQ(op_def(Op::LayerNorm).reduction_length(in, {{"eps", 1e-5}}), 40);
  EXPECT_EQ(refusal(Op::LayerNorm, {{F32, {3, 40}}, {F32, {41}}}, {{"eps", 1e-5}}),
            "layernorm: weight f32 [41] does not fit x f32 [3, 40]");
  EXPECT_EQ(refusal(Op::LayerNorm, in, {{"eps", -1}}),
            "layernorm: eps must be finite and non-negative");
  EXPECT_EQ(refusal(Op::LayerNorm, in), "layernorm: missing attribute 'eps'");
}

TEST(OpCatalog, MoeRouteChecksKAndNorm) {
  std::vector<TensorType> in{{F32, {3, 8}}};
  EXPECT_EQ(infer(Op::MoeRoute, in, {{"k", 2}, {"norm", 1}})[0], (TensorType{F32, {3, 8}}));
  EXPECT_EQ(infer(Op::MoeRoute, in, {{"k", 8}, {"norm", 0}})[0], (TensorType{F32, {3, 8}}));
  EXPECT_EQ(op_def(Op::MoeRoute).reduction_length(in, {{"k", 2}, {"norm", 1}}), 8);
  for (double k : {0.0, 9.0, -1.0})
    EXPECT_EQ(refusal(Op::MoeRoute, in, {{"k", k}, {"norm", 1}}),
              "moe_route: k must be 1..8 (the experts of logits f32 [3, 8]), got " +
                  std::to_string(int(k)))
        << k;
  EXPECT_EQ(refusal(Op::MoeRoute, in, {{"k", 1.5}, {"norm", 1}}),
            "moe_route: attribute 'k' must be an integer");
  EXPECT_EQ(refusal(Op::MoeRoute, in, {{"k", 2}, {"norm", 2}}),
            "moe_route: norm must be 0 (p as is) or 1 (chosen p sum to 1)");
  EXPECT_EQ(refusal(Op::MoeRoute, in, {{"k", 2}}), "moe_route: missing attribute 'norm'");
}

TEST(OpCatalog, MoeFfnChecksExpertShapesAndOneWeightDtype) {
  const int64_t T = 3, D = 16, E = 4, H = 12;
  auto in = [&](DType g, DType u, DType d) {
    return std::vector<TensorType>{
        {F32, {T, D}}, {F32, {T, E}}, {g, {E, H, D}}, {u, {E, H, D}}, {d, {E, D, H}}};
  };
  for (DType w : {DType::F32, DType::F16, DType::BF16})
    EXPECT_EQ(infer(Op::MoeFfn, in(w, w, w))[0], (TensorType{F32, {T, D}}));
  EXPECT_EQ(op_def(Op::MoeFfn).reduction_length(in(F32, F32, F32), {}), 16);
  std::vector<TensorType> wide = in(F32, F32, F32);
  wide[2].shape = wide[3].shape = Shape{E, 40, D};
  wide[4].shape = Shape{E, D, 40};
  EXPECT_EQ(op_def(Op::MoeFfn).reduction_length(wide, {}), 40);
  EXPECT_EQ(refusal(Op::MoeFfn, in(DType::F16, DType::BF16, DType::F16)),
            "moe_ffn: up must have gate's dtype f16, got bf16 [4, 12, 16]");
  EXPECT_EQ(refusal(Op::MoeFfn, in(DType::F16, DType::F16, F32)),
            "moe_ffn: down must have gate's dtype f16, got f32 [4, 16, 12]");
  std::vector<TensorType> bad = in(F32, F32, F32);
  bad[2].shape = Shape{E, H, D + 1};
  EXPECT_EQ(refusal(Op::MoeFfn, bad),
            "moe_ffn: gate must be [E, H, D] = [4, H, 16], got f32 [4, 12, 17]");
  bad = in(F32, F32, F32);
  bad[2].shape = Shape{E * H, D};
  EXPECT_EQ(refusal(Op::MoeFfn, bad),
            "moe_ffn: gate must be [E, H, D] = [4, H, 16], got f32 [48, 16]");
  bad = in(F32, F32, F32);
  bad[3].shape = Shape{E, H + 1, D};
  EXPECT_EQ(refusal(Op::MoeFfn, bad),
            "moe_ffn: up f32 [4, 13, 16] is not gate's shape [4, 12, 16]");
  bad = in(F32, F32, F32);
  bad[4].shape = Shape{E, H, D};
  EXPECT_EQ(refusal(Op::MoeFfn, bad),
            "moe_ffn: down must be [E, D, H] = [4, 16, 12], got f32 [4, 12, 16]");
  bad = in(F32, F32, F32);
  bad[1].shape = Shape{T + 1, E};
  EXPECT_EQ(refusal(Op::MoeFfn, bad),
            "moe_ffn: route f32 [4, 4] does not have the rows of x f32 [3, 16]");
  // Only the combinations with one weight dtype are kernel variants.
  std::vector<std::vector<DType>> combos = dtype_combinations(op_def(Op::MoeFfn));
  ASSERT_EQ(combos.size(), 3u);
  for (const auto& c : combos) EXPECT_TRUE(c[2] == c[3] && c[3] == c[4]);
}

TEST(OpCatalog, MoeExamplesReachTiesAndSkippedExperts) {
  std::mt19937_64 rng(1);
  int tie_rows = 0;
  for (const OpExample& e : op_def(Op::MoeRoute).examples(std::vector<DType>{F32}, rng)) {
    const Tensor& l = e.inputs[0];
    const int64_t E = l.shape()[1], k = e.attrs.get_int("k");
    for (int64_t t = 0; t < l.shape()[0]; ++t) {
      std::vector<float> row(l.data<float>() + t * E, l.data<float>() + (t + 1) * E);
      std::sort(row.begin(), row.end(), std::greater<float>());
      tie_rows += k < E && row[size_t(k - 1)] == row[size_t(k)];  // a tie at the k-th place
    }
  }
  EXPECT_GE(tie_rows, 4);
  bool unchosen_inf = false;
  for (const OpExample& e :
       op_def(Op::MoeFfn).examples(std::vector<DType>{F32, F32, F32, F32, F32}, rng)) {
    const Tensor& route = e.inputs[1];
    const int64_t T = route.shape()[0], E = route.shape()[1];
    for (int64_t x = 0; x < E; ++x) {
      bool chosen = false;
      for (int64_t t = 0; t < T; ++t) chosen |= route.data<float>()[t * E + x] != 0;
      const Tensor& gate = e.inputs[2];
      const int64_t per = gate.numel() / E;
      bool inf = false;
      for (int64_t j = x * per; j < (x + 1) * per; ++j) inf |= std::isinf(gate.data<float>()[j]);
      unchosen_inf |= !chosen && inf;
    }
  }
  EXPECT_TRUE(unchosen_inf);
}

TEST(Dtype, HalfConversionsRoundTrip) {
  for (float x : {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333251953125f})
    EXPECT_EQ(f16_to_f32(f32_to_f16(x)), x) << x;
  EXPECT_EQ(f32_to_f16(70000.0f), 0x7c00);            // overflow to +Inf
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 4096), 0x3c00);  // ties round to even
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(3.140625f)), 3.140625f);
  EXPECT_EQ(dtype_from_name("bf16"), DType::BF16);
  EXPECT_EQ(dtype_from_name("q4_0"), DType::Q4_0);
  EXPECT_THROW(dtype_from_name("iq4_nl"), Error);
}

}  // namespace
}  // namespace tapml

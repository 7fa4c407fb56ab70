// The kernel table: dtypes pick a kernel, and a kernel takes an op's optional inputs and
// attributes only where it says it implements them.
#include "backend/kernel_table.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace tapml {
namespace {

OpCall rope_call(bool with_factors) {
  OpCall c{Op::Rope,
           {{"n_heads", 2}, {"head_dim", 8}, {"rope_dim", 8}, {"base", 1e4}, {"pairing", 0}},
           {{1, 0, DType::F32, Shape{3, 16}}, {2, 0, DType::I32, Shape{3}}},
           {{3, 0, DType::F32, Shape{3, 16}}},
           ""};
  if (with_factors) c.inputs.push_back({4, 0, DType::F32, Shape{4}});
  return c;
}

OpCall attention_call(Attrs extra) {
  OpCall c{Op::Attention,
           {{"n_heads", 2}, {"n_kv_heads", 1}, {"head_dim", 4}, {"scale", 0.5}},
           {{1, 0, DType::F32, Shape{2, 8}},
            {2, 0, DType::F32, Shape{5, 4}},
            {3, 0, DType::F32, Shape{5, 4}}},
           {{4, 0, DType::F32, Shape{2, 8}}},
           ""};
  for (auto& [k, v] : extra.items()) c.attrs.set(k, v);
  return c;
}

// Which kernel of `table` runs the call (its number), or the refusal.
std::string pick(const KernelTable& table, const OpCall& c) {
  std::string why;
  const KernelTable::Kernel* k = table.find(c, "dev", &why);
  if (!k) return why;
  (*k)(c);
  return "kernel";
}

TEST(KernelTable, AKernelWithoutAnOptionalInputRefusesCallsThatHaveIt) {
  KernelTable old;
  old.add(Op::Rope, [](const OpCall&) {});
  EXPECT_EQ(pick(old, rope_call(false)), "kernel");
  EXPECT_EQ(pick(old, rope_call(true)), "dev: no kernel for rope with freq_factors");

  KernelTable both;
  both.add(Op::Rope, [](const OpCall&) {}, {}, {"freq_factors"});
  EXPECT_EQ(pick(both, rope_call(false)), "kernel");
  EXPECT_EQ(pick(both, rope_call(true)), "kernel");

  // Keyed by dtypes: a list that covers the optional input matches calls with and without
  // it; one that stops at the required inputs still applies to calls that have it.
  for (size_t n : {2u, 3u}) {
    std::vector<std::vector<DType>> dtypes = {{DType::F32}, {DType::I32}, {DType::F32}};
    dtypes.resize(n);
    KernelTable keyed;
    keyed.add(Op::Rope, [](const OpCall&) {}, dtypes, {"freq_factors"});
    EXPECT_EQ(pick(keyed, rope_call(false)), "kernel") << n;
    EXPECT_EQ(pick(keyed, rope_call(true)), "kernel") << n;
  }
  KernelTable f16_factors;
  f16_factors.add(Op::Rope, [](const OpCall&) {}, {{DType::F32}, {DType::I32}, {DType::F16}},
                  {"freq_factors"});
  EXPECT_EQ(pick(f16_factors, rope_call(false)), "kernel");
  EXPECT_EQ(pick(f16_factors, rope_call(true)),
            "dev: no kernel for rope with x f32, pos i32, freq_factors f32");
}

TEST(KernelTable, AKernelWithoutAnOptionalAttributeRefusesCallsThatTurnItOn) {
  KernelTable old;
  old.add(Op::Attention, [](const OpCall&) {});
  EXPECT_EQ(pick(old, attention_call({})), "kernel");
  EXPECT_EQ(pick(old, attention_call({{"window", 0}, {"softcap", 0}})), "kernel");  // off
  EXPECT_EQ(pick(old, attention_call({{"window", 4}})), "dev: no kernel for attention with window");
  EXPECT_EQ(pick(old, attention_call({{"softcap", 50}})),
            "dev: no kernel for attention with softcap");

  // Of two kernels, the one that implements the option runs the calls that use it.
  KernelTable two;
  int ran = -1;
  two.add(Op::Attention, [&](const OpCall&) { ran = 0; });
  two.add(Op::Attention, [&](const OpCall&) { ran = 1; }, {}, {"window"});
  two.run(attention_call({}), "dev");
  EXPECT_EQ(ran, 0);
  two.run(attention_call({{"window", 3}}), "dev");
  EXPECT_EQ(ran, 1);
  EXPECT_THROW(two.run(attention_call({{"window", 3}, {"softcap", 1}}), "dev"), Error);
}

TEST(KernelTable, OnlyAnOpsOptionsCanBeNamed) {
  KernelTable t;
  EXPECT_THROW(t.add(Op::Attention, [](const OpCall&) {}, {}, {"scale"}), Error);
  EXPECT_THROW(t.add(Op::Rope, [](const OpCall&) {}, {}, {"pos"}), Error);
  EXPECT_THROW(t.add(Op::Rope, [](const OpCall&) {}, {{DType::F32}}), Error);
  EXPECT_NO_THROW(t.add(Op::Attention, [](const OpCall&) {}, {}, {"window", "softcap"}));
}

}  // namespace
}  // namespace tapml

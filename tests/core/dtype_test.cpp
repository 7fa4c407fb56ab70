// DType: names, byte counts of plain and block types, and what a block tensor refuses.
#include "core/dtype.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace tapml {
namespace {

TEST(DType, NamesRoundTripAndBlockTypesFollowGgml) {
  for (DType t : kAllDTypes) EXPECT_EQ(dtype_from_name(dtype_name(t)), t);
  EXPECT_EQ(dtype_name(DType::Q8_0), "q8_0");
  EXPECT_EQ(dtype_name(DType::Q4_K), "q4_k");
  EXPECT_THROW(dtype_from_name("q8_k"), Error);
  for (DType t : kBlockDTypes) {
    ASSERT_TRUE(block_quant(t).has_value());
    EXPECT_EQ(dtype_of(*block_quant(t)), t);
    EXPECT_TRUE(is_block(t));
    EXPECT_FALSE(is_float(t));
    EXPECT_THROW(dtype_size(t), Error);  // no per-element size
  }
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I32}) {
    EXPECT_FALSE(is_block(t));
    EXPECT_EQ(block_elems(t), 1);
    EXPECT_EQ(row_bytes(t, 5), 5 * dtype_size(t));
  }
  EXPECT_FALSE(is_float(DType::I32));
}

TEST(DType, BlockRowsAreWholeBlocks) {
  struct Want {
    DType t;
    int64_t block;
    size_t bytes;
  };
  // ggml's type traits: block size and block bytes.
  const Want want[] = {{DType::Q4_0, 32, 18},   {DType::Q4_1, 32, 20},   {DType::Q5_0, 32, 22},
                       {DType::Q5_1, 32, 24},   {DType::Q8_0, 32, 34},   {DType::Q2_K, 256, 84},
                       {DType::Q3_K, 256, 110}, {DType::Q4_K, 256, 144}, {DType::Q5_K, 256, 176},
                       {DType::Q6_K, 256, 210}};
  for (const Want& w : want) {
    EXPECT_EQ(block_elems(w.t), w.block);
    EXPECT_EQ(row_bytes(w.t, 0), 0u);
    EXPECT_EQ(row_bytes(w.t, 4 * w.block), 4 * w.bytes);
    EXPECT_THROW(row_bytes(w.t, w.block + 1), Error);
    EXPECT_EQ(tensor_bytes(w.t, Shape{3, 2 * w.block}), 6 * w.bytes);
    EXPECT_THROW(tensor_bytes(w.t, Shape{}), Error);
    Tensor x(w.t, Shape{3, 2 * w.block});
    EXPECT_EQ(x.nbytes(), 6 * w.bytes);
    EXPECT_EQ(x.slice_rows(1, 3).nbytes(), 4 * w.bytes);
    EXPECT_EQ(x.slice_rows(1, 3).bytes() - x.bytes(), ptrdiff_t(2 * w.bytes));
    EXPECT_EQ(x.reshaped(Shape{6, w.block}).nbytes(), x.nbytes());
    EXPECT_THROW(x.reshaped(Shape{w.block, 6}), Error);
    EXPECT_THROW(x.get_f32(0), Error);
  }
}

TEST(DType, BlockTensorsQuantizeAndDequantizeByRow) {
  std::vector<float> v(2 * 64);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(float(i));
  Tensor q = Tensor::from_f32_as(DType::Q8_0, Shape{2, 64}, v);
  EXPECT_EQ(q.nbytes(), 4 * 34u);
  std::vector<float> back = q.to_f32();
  ASSERT_EQ(back.size(), v.size());
  std::vector<float> row(64);
  for (int r = 0; r < 2; ++r) {
    dequantize_row(QuantType::Q8_0, q.bytes() + r * 2 * 34, row.data(), 64);
    for (int i = 0; i < 64; ++i) {
      EXPECT_EQ(back[size_t(r * 64 + i)], row[size_t(i)]);
      EXPECT_NEAR(back[size_t(r * 64 + i)], v[size_t(r * 64 + i)], 0.01);
    }
  }
  EXPECT_THROW(Tensor::from_f32_as(DType::Q4_K, Shape{2, 64}, v), Error);  // 64 < 256
}

}  // namespace
}  // namespace tapml

// matmul  (x [T, K] f32, w [N, K] f32|f16|bf16|q4_0..q6_k)  -> out [T, N] f32
//   out[t][n] = sum_k x[t][k] * w[n][k]; a block-type w means its dequantized values (K must
//   then be a multiple of the block size).
#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs&) {
  const char* op = "matmul";
  expect_matrix(in[0], op, "x");
  expect_matrix(in[1], op, "w");
  expect_whole_blocks(in[1], op, "w");
  TAPML_EXPECT(in[0].shape[1] == in[1].shape[1], op,
               "x " + describe(in[0]) + " and w " + describe(in[1]) + " disagree on K");
  return {{DType::F32, Shape{in[0].shape[0], in[1].shape[0]}}};
}

std::vector<OpExample> examples(std::span<const DType> t, std::mt19937_64& rng) {
  auto call = [&](const char* label, int64_t T, int64_t K, int64_t N, double xs, double ws) {
    return OpExample{
        label,
        {},
        {uniform(DType::F32, {T, K}, -xs, xs, rng), uniform(t[1], {N, K}, -ws, ws, rng)}};
  };
  // Block types take K in whole blocks (256 covers both block sizes); the weights are
  // quantized from uniform draws.
  if (is_block(t[1]))
    return {call("decode row, K=256 N=37", 1, 256, 37, 1, 1),
            call("prefill T=9 K=1024 N=70", 9, 1024, 70, 1, 1),
            call("K=4096 long reduction", 3, 4096, 19, 1, 1),
            call("large activations", 3, 512, 21, 3e3, 1)};
  return {call("decode row, K=67 N=37 tails", 1, 67, 37, 1, 1),
          call("prefill T=33 K=256 N=70", 33, 256, 70, 1, 1),
          call("K=4099 long reduction with a tail", 5, 4099, 19, 1, 1),
          // More weight rows than a blocked kernel takes at once for K this long, and a last
          // block of x rows that is not full.
          call("prefill T=6 over several weight blocks, K=1030 N=53", 6, 1030, 53, 1, 1),
          call("large activations", 3, 136, 21, 3e3, 1),
          // Weights near the top of the f16 range (65504) with small activations.
          call("weights near the f16 limit", 2, 72, 9, 1e-2, t[1] == DType::F32 ? 1e4 : 6e4)};
}

}  // namespace

OpDef define_matmul() {
  return {Op::Matmul,    "matmul", {"x", "w"},
          {"out"},       {},       {{DType::F32}, kMatrixWeightDtypes},
          {-1},          infer,    reduce_cols,
          {8, 8, false}, examples};
}

}  // namespace tapml::ops

// embedding  (table [V, D] f32|f16|bf16|q4_0..q6_k, ids [T] i32)  -> out [T, D] f32
//   out[t] = table[ids[t]], widened to f32 (a block-type row dequantized, D a multiple of the
//   block size); an id outside [0, V) is an error. A copy: the result must be bit-exact.
#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs&) {
  const char* op = "embedding";
  expect_matrix(in[0], op, "table");
  expect_whole_blocks(in[0], op, "table");
  TAPML_EXPECT(in[1].shape.rank() == 1, op, "ids must be [T], got " + describe(in[1]));
  return {{DType::F32, Shape{in[1].shape[0], in[0].shape[1]}}};
}

std::vector<OpExample> examples(std::span<const DType> t, std::mt19937_64& rng) {
  std::vector<OpExample> out;
  if (is_block(t[0])) {  // rows of whole blocks
    Tensor rows = ids(Shape{6}, 0, 97, rng);
    rows.mutable_data<int32_t>()[0] = 0;
    rows.mutable_data<int32_t>()[5] = 96;
    out.push_back(
        {"V=97 D=256, first and last rows", {}, {uniform(t[0], {97, 256}, -1, 1, rng), rows}});
    out.push_back({"V=40 D=512 large values",
                   {},
                   {uniform(t[0], {40, 512}, -1e4, 1e4, rng), ids({9}, 0, 40, rng)}});
    return out;
  }
  // D = 67 leaves a tail after every vector width; the ids include both ends of the table.
  Tensor rows = ids(Shape{6}, 0, 97, rng);
  rows.mutable_data<int32_t>()[0] = 0;
  rows.mutable_data<int32_t>()[5] = 96;
  out.push_back(
      {"V=97 D=67, first and last rows", {}, {uniform(t[0], {97, 67}, -1, 1, rng), rows}});
  // Values at the edges of the table's range (f16 tops out at 65504).
  double big = t[0] == DType::F16 ? 65000 : 1e30;
  out.push_back(
      {"large values", {}, {uniform(t[0], {40, 130}, -big, big, rng), ids({9}, 0, 40, rng)}});
  return out;
}

}  // namespace

OpDef define_embedding() {
  return {Op::Embedding, "embedding", {"table", "ids"},
          {"out"},       {},          {kMatrixWeightDtypes, {DType::I32}},
          {-1},          infer,       no_reduction,
          {0, 0, true},  examples};
}

}  // namespace tapml::ops

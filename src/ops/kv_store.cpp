// kv_store  (k_cache [S, C] f32|f16, v_cache [S, C] like k_cache, k [T, C] f32, v [T, C] f32,
//            pos [1] i32) -> k_cache, v_cache
//   IN PLACE: rows pos..pos+T-1 of each cache receive k / v; pos+T <= S. A copy, rounded to
//   nearest even into an f16 cache: the caches must come out bit-exact, other rows untouched.
#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs&) {
  const char* op = "kv_store";
  for (int i = 0; i < 4; ++i) expect_matrix(in[i], op, i < 2 ? "cache" : "k/v");
  TAPML_EXPECT(in[0].shape == in[1].shape, op, "k_cache and v_cache differ");
  TAPML_EXPECT(in[2].shape == in[3].shape, op, "k and v differ");
  TAPML_EXPECT(in[2].shape[1] == in[0].shape[1], op,
               "k " + describe(in[2]) + " does not fit cache " + describe(in[0]));
  TAPML_EXPECT(in[2].shape[0] <= in[0].shape[0], op, "more rows than the cache holds");
  TAPML_EXPECT(in[4].shape == Shape{1}, op, "pos must be [1], got " + describe(in[4]));
  return {in[0], in[1]};
}

std::vector<OpExample> examples(std::span<const DType> dtypes, std::mt19937_64& rng) {
  // The caches start full of other values, so a row written to the wrong place shows.
  auto call = [&](std::string label, int64_t S, int64_t C, int64_t T, int32_t pos) {
    return OpExample{
        std::move(label),
        {},
        {uniform(dtypes[0], {S, C}, -1, 1, rng), uniform(dtypes[0], {S, C}, -1, 1, rng),
         uniform(DType::F32, {T, C}, -1, 1, rng), uniform(DType::F32, {T, C}, -1, 1, rng),
         counting(1, pos)}};
  };
  return {call("prefill at 0", 16, 24, 5, 0), call("decode at 7", 16, 24, 1, 7),
          call("prefill of 4 rows after 9 cached", 16, 40, 4, 9),
          call("last rows of the cache", 16, 67, 3, 13)};
}

}  // namespace

OpDef define_kv_store() {
  return {Op::KvStore,
          "kv_store",
          {"k_cache", "v_cache", "k", "v", "pos"},
          {"k_cache", "v_cache"},
          {},
          {{DType::F32, DType::F16},
           {DType::F32, DType::F16},
           {DType::F32},
           {DType::F32},
           {DType::I32}},
          {0, 1},
          infer,
          no_reduction,
          {0, 0, true},
          examples,
          0,
          0,
          {-1, 0, -1, -1, -1}};
}

}  // namespace tapml::ops

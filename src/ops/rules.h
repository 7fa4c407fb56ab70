// What the op definition files (ops/<name>.cpp) share: the checks their shape rules are made
// of, and fillers for their conformance examples. Private to the ops room.
#pragma once
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "ops/op.h"

namespace tapml::ops {

using Types = std::span<const TensorType>;

// Prefixes the op's name; lazy like TAPML_REQUIRE, as these checks run on every call.
#define TAPML_EXPECT(ok, op, what) TAPML_REQUIRE(ok, std::string(op) + ": " + (what))

void expect_matrix(const TensorType& t, std::string_view op, const char* name);
// A block-type matrix's rows must be whole blocks (a no-op for the other dtypes).
void expect_whole_blocks(const TensorType& t, std::string_view op, const char* name);
int64_t positive_attr(const Attrs& a, const char* name, std::string_view op);

// The float dtypes a weight may have.
inline const std::vector<DType> kWeightDtypes = {DType::F32, DType::F16, DType::BF16};
// A weight matrix read a row at a time (matmul's w, embedding's table) may also be stored in
// ggml's quantized blocks; its rows must then hold whole blocks.
inline const std::vector<DType> kMatrixWeightDtypes = {
    DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
    DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K};

int64_t no_reduction(Types, const Attrs&);
int64_t reduce_cols(Types in, const Attrs&);  // the width of input 0

// Example inputs. Values are drawn from `rng` and rounded to the tensor's dtype; the same
// rng state gives the same values on every platform.
Tensor uniform(DType dtype, Shape shape, double lo, double hi, std::mt19937_64& rng);
Tensor ids(Shape shape, int32_t lo, int32_t hi, std::mt19937_64& rng);  // i32 in [lo, hi)
Tensor counting(int64_t n, int32_t first);                              // i32 first, first+1, ...

}  // namespace tapml::ops

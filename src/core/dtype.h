// Element types: plain scalars (f32, f16, bf16, i32) and ggml's quantized block types, whose
// rows are whole blocks of 32 or 256 elements (layouts in core/quant.h). A block type has no
// per-element size, so every byte count goes through row_bytes / tensor_bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/quant.h"
#include "core/shape.h"

namespace tapml {

enum class DType : uint8_t {
  F32,
  F16,
  BF16,
  I32,
  Q4_0,
  Q4_1,
  Q5_0,
  Q5_1,
  Q8_0,
  Q2_K,
  Q3_K,
  Q4_K,
  Q5_K,
  Q6_K,
};

inline constexpr DType kAllDTypes[] = {
    DType::F32,  DType::F16,  DType::BF16, DType::I32,  DType::Q4_0, DType::Q4_1, DType::Q5_0,
    DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,
};

inline constexpr DType kBlockDTypes[] = {
    DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
    DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,
};

// Bytes of one element; throws Error for a block type, which has none (use row_bytes).
size_t dtype_size(DType t);
// "f32", "f16", "bf16", "i32", "q4_0", ..., "q8_0", "q2_k", ..., "q6_k".
std::string_view dtype_name(DType t);
// Throws Error for an unknown name.
DType dtype_from_name(std::string_view name);
// True for f32/f16/bf16: element-wise float types. Block types are not.
bool is_float(DType t);
bool is_block(DType t);
// The ggml block type behind a block DType; nullopt for the plain ones.
std::optional<QuantType> block_quant(DType t);
DType dtype_of(QuantType q);
// Elements of one block: 1 for plain types, 32 or 256 for block types.
int64_t block_elems(DType t);
// Bytes of a row of n elements along the innermost dimension. Throws Error unless n >= 0 and,
// for a block type, a multiple of the block size.
size_t row_bytes(DType t, int64_t n);
// Bytes of a whole row-major tensor: rows x row_bytes(innermost). A block-type tensor needs
// rank >= 1.
size_t tensor_bytes(DType t, const Shape& shape);

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even
inline float bf16_to_f32(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_bf16(float f);  // round to nearest even

}  // namespace tapml

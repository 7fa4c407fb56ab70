// Element types. Quantized block types will be added as kinds whose element size is a block.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tapml {

enum class DType : uint8_t { F32, F16, BF16, I32 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);
// Throws Error for an unknown name.
DType dtype_from_name(std::string_view name);
bool is_float(DType t);

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

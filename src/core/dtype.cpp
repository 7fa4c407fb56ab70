#include "core/dtype.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace tapml {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::F16:
      return 2;
    case DType::BF16:
      return 2;
    case DType::I32:
      return 4;
    default:
      throw Error("dtype " + std::string(dtype_name(t)) +
                  " is a block type: its bytes are counted per row, not per element");
  }
}

std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "f32";
    case DType::F16:
      return "f16";
    case DType::BF16:
      return "bf16";
    case DType::I32:
      return "i32";
    case DType::Q4_0:
      return "q4_0";
    case DType::Q4_1:
      return "q4_1";
    case DType::Q5_0:
      return "q5_0";
    case DType::Q5_1:
      return "q5_1";
    case DType::Q8_0:
      return "q8_0";
    case DType::Q2_K:
      return "q2_k";
    case DType::Q3_K:
      return "q3_k";
    case DType::Q4_K:
      return "q4_k";
    case DType::Q5_K:
      return "q5_k";
    case DType::Q6_K:
      return "q6_k";
  }
  return "?";
}

DType dtype_from_name(std::string_view name) {
  for (DType t : kAllDTypes)
    if (dtype_name(t) == name) return t;
  throw Error("unknown dtype '" + std::string(name) +
              "' (known: f32, f16, bf16, i32, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k..q6_k)");
}

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

bool is_block(DType t) { return block_quant(t).has_value(); }

std::optional<QuantType> block_quant(DType t) {
  switch (t) {
    case DType::Q4_0:
      return QuantType::Q4_0;
    case DType::Q4_1:
      return QuantType::Q4_1;
    case DType::Q5_0:
      return QuantType::Q5_0;
    case DType::Q5_1:
      return QuantType::Q5_1;
    case DType::Q8_0:
      return QuantType::Q8_0;
    case DType::Q2_K:
      return QuantType::Q2_K;
    case DType::Q3_K:
      return QuantType::Q3_K;
    case DType::Q4_K:
      return QuantType::Q4_K;
    case DType::Q5_K:
      return QuantType::Q5_K;
    case DType::Q6_K:
      return QuantType::Q6_K;
    default:
      return std::nullopt;
  }
}

DType dtype_of(QuantType q) {
  for (DType t : kAllDTypes)
    if (block_quant(t) == q) return t;
  throw Error("quant type " + std::string(quant_name(q)) + " has no dtype");
}

int64_t block_elems(DType t) {
  std::optional<QuantType> q = block_quant(t);
  return q ? quant_block_elems(*q) : 1;
}

size_t row_bytes(DType t, int64_t n) {
  if (n < 0) throw Error("row of " + std::to_string(n) + " elements");
  if (std::optional<QuantType> q = block_quant(t)) {
    if (n % quant_block_elems(*q) != 0)
      throw Error("a " + std::string(dtype_name(t)) + " row of " + std::to_string(n) +
                  " elements is not a multiple of its " + std::to_string(quant_block_elems(*q)) +
                  "-element blocks");
    return size_t(n / quant_block_elems(*q)) * quant_block_bytes(*q);
  }
  return size_t(n) * dtype_size(t);
}

size_t tensor_bytes(DType t, const Shape& shape) {
  if (!is_block(t)) return size_t(shape.numel()) * dtype_size(t);
  if (shape.rank() == 0)
    throw Error("a " + std::string(dtype_name(t)) + " tensor needs at least one dimension");
  return size_t(shape.rows()) * row_bytes(t, shape.back());
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalize
      int e = -1;
      do {
        mant <<= 1;
        ++e;
      } while ((mant & 0x400) == 0);
      bits = sign | uint32_t(127 - 15 - e) << 23 | (mant & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | mant << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | mant << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint16_t sign = (x >> 16) & 0x8000;
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0);  // Inf / NaN
  if (ax >= 0x477ff000u) return sign | 0x7c00;  // rounds to >= 65520: overflow to Inf
  if (ax < 0x38800000u) {                       // below the smallest normal half: subnormal or zero
    float a;
    std::memcpy(&a, &ax, 4);
    // a * 2^24 rounded to nearest even gives the subnormal mantissa directly.
    return sign | uint16_t(std::nearbyint(a * 16777216.0f));
  }
  uint32_t mant = ax & 0x7fffff;
  uint32_t exp = (ax >> 23) - 127 + 15;
  uint32_t h = exp << 10 | mant >> 13;
  uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) ++h;  // carries into the exponent correctly
  return sign | uint16_t(h);
}

uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // quiet NaN
  uint32_t rounding = 0x7fff + ((x >> 16) & 1);
  return uint16_t((x + rounding) >> 16);
}

}  // namespace tapml

// GGUF/ggml quantized block types: the legacy 32-element blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
// and the 256-element K-quant super-blocks (Q2_K..Q6_K) that llama.cpp's Q*_K_M files mix.
// Layouts, dequantization and the reference quantizers follow ggml's ggml-quants.c bit for bit:
// the same fields, the same float operations in the same order, f16 scales through
// f16_to_f32 / f32_to_f16. Blocks are little-endian, as GGUF stores them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tapml {

// The values are ggml's type ids, the numbers a GGUF tensor header stores.
enum class QuantType : uint8_t {
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
};

inline constexpr QuantType kQuantTypes[] = {
    QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q8_0,
    QuantType::Q2_K, QuantType::Q3_K, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K,
};

int64_t quant_block_elems(QuantType t);  // 32 or 256
size_t quant_block_bytes(QuantType t);
// ggml's names: "q4_0", "q8_0", "q2_K", ...
std::string_view quant_name(QuantType t);
// nullopt for ids and names of other ggml types (f32, f16, the i-quants, ...).
std::optional<QuantType> quant_from_ggml_id(uint32_t id);
std::optional<QuantType> quant_from_name(std::string_view name);
// The bytes of n elements; throws Error unless n is a non-negative multiple of the block size.
size_t quant_row_bytes(QuantType t, int64_t n);

// n elements (a multiple of the block size, else Error) from blocks to f32, with ggml's
// arithmetic: the output is bit-identical to ggml's dequantize_row_* and gguf-py's.
// blocks need no alignment.
void dequantize_row(QuantType t, const void* blocks, float* out, int64_t n);

// The 8-bit blocks ggml's dot products quantize the activations to before multiplying them
// with a weight of type t: Q8_0 (32 values, f16 scale) for the legacy types, Q8_K (256
// values, f32 scale) for the K-quants. x is replaced by what those blocks hold, in f32:
// xhat[i] = d * q[i] with ggml's rounding (Q8_0: roundf(x / d) with d = amax / 127 stored
// as f16; Q8_K: nearest_int(-127 / max * x), max the signed value of largest magnitude).
// n must be a multiple of t's block size.
void activations_as_q8(QuantType t, const float* x, float* xhat, int64_t n);

// ggml's reference quantizers (quantize_row_*_ref: no importance matrix), bit-identical to them.
// llama-quantize without --imatrix calls exactly these for every type here, so its blocks
// match ours bit for bit (tests/core/quant_test.cpp checks a llama-quantize file of each type).
void quantize_row(QuantType t, const float* in, void* blocks, int64_t n);

// The block layouts. f16 fields hold IEEE half bits; a field order or size differing from
// ggml's block_* would break every file, hence the static_asserts in quant.cpp.
namespace quant {

inline constexpr int kQK = 32;           // elements of a legacy block
inline constexpr int kQK_K = 256;        // elements of a K-quant super-block
inline constexpr int kKScaleBytes = 12;  // Q4_K/Q5_K: eight 6-bit scales and eight 6-bit mins

// x = d * (q - 8), q in 0..15; element j in the low nibble of qs[j], j+16 in the high one.
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQK / 2];
};
// x = d * q + m, q in 0..15; packing as Q4_0.
struct BlockQ4_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qs[kQK / 2];
};
// x = d * (q - 16), q in 0..31: low nibbles as Q4_0, the fifth bit of element j in bit j of qh.
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// x = d * q + m, q in 0..31; packing as Q5_0.
struct BlockQ5_1 {
  uint16_t d;
  uint16_t m;
  uint8_t qh[4];
  uint8_t qs[kQK / 2];
};
// x = d * q, q in -128..127 (the quantizer uses -127..127).
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK];
};
// 16 groups of 16: x = d * (scales[g] & 15) * q - dmin * (scales[g] >> 4), q in 0..3.
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];
  uint8_t qs[kQK_K / 4];
  uint16_t d;
  uint16_t dmin;
};
// 16 groups of 16: x = d * (s[g] - 32) * (q - 4), q in 0..7 (low 2 bits in qs, the third in
// hmask), s[g] a 6-bit scale packed into 12 bytes.
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];
  uint16_t d;
};
// 8 groups of 32: x = d * sc[g] * q - dmin * m[g], q in 0..15, sc and m 6-bit.
struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qs[kQK_K / 2];
};
// As Q4_K with q in 0..31, the fifth bits in qh.
struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleBytes];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
// 16 groups of 16: x = d * scales[g] * (q - 32), q in 0..63 (low 4 bits in ql, high 2 in qh).
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};

// ggml's block_q8_K: the activation blocks of the K-quants' dot products.
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];  // sums of qs in groups of 16
};
// ggml's quantize_row_q8_K_ref (n a multiple of 256).
void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n);

// The packed 6-bit scale and min of Q4_K/Q5_K group j (0..7) from the 12 scale bytes.
void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m);
// The 6-bit scale of Q3_K group j (0..15), biased by 32 (0..63).
int q3_k_scale(const uint8_t* scales, int j);

}  // namespace quant
}  // namespace tapml

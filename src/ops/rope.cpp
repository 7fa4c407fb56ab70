// rope  (x [T, H*hd] f32, pos [T] i32 [, freq_factors [rope_dim/2] f32])
//       attrs n_heads, head_dim, rope_dim, base, pairing  -> out [T, H*hd] f32
//   Per head, rotate pairs of the first rope_dim dimensions by the angle pos * freq_i,
//   freq_i = base^(-2i/rope_dim), i = pair index. pairing 0 (adjacent): pairs (2i, 2i+1).
//   pairing 1 (neox): pairs (i, i + rope_dim/2). The other dimensions are copied.
//   With the optional freq_factors, freq_i = base^(-2i/rope_dim) / freq_factors[i]: llama.cpp's
//   rope_freqs.weight, which carries Llama 3.1's RoPE scaling.
//   The error of a correct f32 kernel grows with the position (theta = pos * freq rounded
//   in f32 is off by about pos * 2^-24 radians), which the reduction length cannot express:
//   hence the large uncalibrated factor (it covers positions up to ~2000).
#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs& a) {
  const char* op = "rope";
  expect_matrix(in[0], op, "x");
  TAPML_EXPECT(in[1].shape == Shape{in[0].shape[0]}, op,
               "pos must be [T] matching x, got " + describe(in[1]));
  int64_t h = positive_attr(a, "n_heads", op), hd = positive_attr(a, "head_dim", op);
  int64_t rd = positive_attr(a, "rope_dim", op);
  TAPML_EXPECT(h * hd == in[0].shape[1], op, "n_heads*head_dim != width of x " + describe(in[0]));
  TAPML_EXPECT(rd <= hd && rd % 2 == 0, op, "rope_dim must be even and <= head_dim");
  int64_t pairing = a.get_int("pairing");
  TAPML_EXPECT(pairing == 0 || pairing == 1, op, "pairing must be 0 (adjacent) or 1 (neox)");
  TAPML_EXPECT(a.get("base") > 0, op, "base must be positive");
  if (in.size() > 2)
    TAPML_EXPECT(in[2].shape == Shape{rd / 2}, op,
                 "freq_factors must be [rope_dim/2] = [" + std::to_string(rd / 2) + "], got " +
                     describe(in[2]));
  return {in[0]};
}

std::vector<OpExample> examples(std::span<const DType>, std::mt19937_64& rng) {
  auto call = [&](std::string label, int64_t T, int64_t H, int64_t hd, int64_t rd, int pairing,
                  Tensor pos) {
    return OpExample{std::move(label),
                     {{"n_heads", double(H)},
                      {"head_dim", double(hd)},
                      {"rope_dim", double(rd)},
                      {"base", 10000},
                      {"pairing", double(pairing)}},
                     {uniform(DType::F32, {T, H * hd}, -2, 2, rng), std::move(pos)}};
  };
  std::vector<OpExample> out;
  for (int pairing : {0, 1}) {
    std::string p = pairing ? "neox" : "adjacent";
    out.push_back(call(p + ", prefill from 0", 7, 3, 16, 16, pairing, counting(7, 0)));
    out.push_back(call(p + ", decode at 1000", 1, 4, 64, 64, pairing, counting(1, 1000)));
    out.push_back(call(p + ", partial rope_dim 8 of 24", 5, 2, 24, 8, pairing, counting(5, 30)));
    // Angles of thousands of radians, which sin and cos must reduce; an angle formed in f32
    // is off by about pos * 2^-24, and the case's noise floor measures how far.
    out.push_back(
        call(p + ", long context at 8190..8193", 4, 2, 128, 128, pairing, counting(4, 8190)));
    // Llama 3.1's factors run from 1 (high frequencies) to 8 (low); these are drawn from
    // that range, so that a kernel that ignores them or multiplies by them is far off.
    OpExample scaled =
        call(p + ", freq_factors, decode at 3000", 1, 4, 64, 64, pairing, counting(1, 3000));
    scaled.inputs.push_back(uniform(DType::F32, {32}, 1, 8, rng));
    out.push_back(std::move(scaled));
    scaled = call(p + ", freq_factors, partial rope_dim 12 of 20, prefill", 6, 3, 20, 12, pairing,
                  counting(6, 0));
    scaled.inputs.push_back(uniform(DType::F32, {6}, 0.5, 40, rng));
    out.push_back(std::move(scaled));
  }
  return out;
}

}  // namespace

OpDef define_rope() {
  OpDef d{Op::Rope,
          "rope",
          {"x", "pos", "freq_factors"},
          {"out"},
          {"n_heads", "head_dim", "rope_dim", "base", "pairing"},
          {{DType::F32}, {DType::I32}, {DType::F32}},
          {-1},
          infer,
          no_reduction,
          {64, 4096, false},
          examples};
  d.optional_inputs = 1;
  return d;
}

}  // namespace tapml::ops

// moe_ffn  (x [T, D] f32, route [T, E] f32, gate [E, H, D], up [E, H, D], down [E, D, H];
//           gate, up and down all f32, all f16 or all bf16)  -> out [T, D] f32
//   out[t] = sum over the experts e with route[t, e] != 0 of
//              route[t, e] * down_e (silu(gate_e x[t]) * up_e x[t])
//   where W_e v is the matrix W[e] ([out, in], as matmul's w) times v, and silu(z) =
//   z / (1 + exp(-z)). An expert whose route weight is 0 is skipped, not computed (its
//   output would be multiplied by 0, but an inf or NaN in it must not reach the sum).
//   route is moe_route's output: the mixture of experts' FFN of Mixtral and Qwen2-MoE.
//   Reduction length max(D, H): an output sums H products of down's, each of which holds
//   two sums of D; the error of the longer reduction dominates (the sum over the few
//   chosen experts adds little), as with two matmuls in a row.
#include <algorithm>
#include <cmath>

#include "ops/rules.h"

namespace tapml::ops {

namespace {

std::vector<TensorType> infer(Types in, const Attrs&) {
  const char* op = "moe_ffn";
  expect_matrix(in[0], op, "x");
  expect_matrix(in[1], op, "route");
  TAPML_EXPECT(in[1].shape[0] == in[0].shape[0], op,
               "route " + describe(in[1]) + " does not have the rows of x " + describe(in[0]));
  const int64_t D = in[0].shape[1], E = in[1].shape[1];
  const TensorType& gate = in[2];
  TAPML_EXPECT(
      gate.shape.rank() == 3 && gate.shape[0] == E && gate.shape[1] > 0 && gate.shape[2] == D, op,
      "gate must be [E, H, D] = [" + std::to_string(E) + ", H, " + std::to_string(D) + "], got " +
          describe(gate));
  const int64_t H = gate.shape[1];
  TAPML_EXPECT(in[3].shape == gate.shape, op,
               "up " + describe(in[3]) + " is not gate's shape " + gate.shape.str());
  const Shape down{E, D, H};
  TAPML_EXPECT(in[4].shape == down, op,
               "down must be [E, D, H] = " + down.str() + ", got " + describe(in[4]));
  return {in[0]};
}

int64_t reduction(Types in, const Attrs&) { return std::max(in[0].shape[1], in[2].shape[1]); }

// [T, E]: k experts per row chosen at random with weights in [0.05, 1], zero elsewhere.
Tensor sparse_route(int64_t T, int64_t E, int64_t k, std::mt19937_64& rng) {
  Tensor r = uniform(DType::F32, {T, E}, 0.05, 1, rng);
  std::vector<int64_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t e = 0; e < E; ++e) order[size_t(e)] = e;
    for (int64_t i = 0; i < k; ++i)  // the first k of a partial shuffle are chosen
      std::swap(order[size_t(i)], order[size_t(i + int64_t(rng() % uint64_t(E - i)))]);
    for (int64_t i = k; i < E; ++i) r.mutable_data<float>()[t * E + order[size_t(i)]] = 0;
  }
  return r;
}

std::vector<OpExample> examples(std::span<const DType> dtypes, std::mt19937_64& rng) {
  const DType w = dtypes[2];
  auto call = [&](std::string label, int64_t T, int64_t D, int64_t H, int64_t E, Tensor route,
                  double x_scale) {
    const double wd = 1 / std::sqrt(double(D)), wh = 1 / std::sqrt(double(H));
    std::vector<Tensor> in;
    in.push_back(uniform(DType::F32, {T, D}, -x_scale, x_scale, rng));
    in.push_back(std::move(route));
    in.push_back(uniform(w, {E, H, D}, -2 * wd, 2 * wd, rng));
    in.push_back(uniform(w, {E, H, D}, -2 * wd, 2 * wd, rng));
    in.push_back(uniform(w, {E, D, H}, -2 * wh, 2 * wh, rng));
    return OpExample{std::move(label), {}, std::move(in)};
  };
  std::vector<OpExample> out;
  out.push_back(
      call("Mixtral-like: E=8, top 2, 5 tokens", 5, 64, 48, 8, sparse_route(5, 8, 2, rng), 1));
  out.push_back(call("D=67 H=43 tails, E=4 top 2", 3, 67, 43, 4, sparse_route(3, 4, 2, rng), 1));
  out.push_back(
      call("decode: E=16, top 4, D=128 H=96", 1, 128, 96, 16, sparse_route(1, 16, 4, rng), 1));
  out.push_back(call("9 tokens, D=256 H=520: long reductions", 9, 256, 520, 6,
                     sparse_route(9, 6, 2, rng), 1));
  // Expert 0 is chosen by every token and expert 4 by none; the weights of the unchosen
  // are poisoned, so a kernel that computes it and multiplies by 0 gets NaN.
  Tensor route = sparse_route(4, 5, 2, rng);
  for (int64_t t = 0; t < 4; ++t) {
    float* r = route.mutable_data<float>() + t * 5;
    if (r[4] != 0) std::swap(r[4], r[r[1] == 0 ? 1 : r[2] == 0 ? 2 : 3]);
    if (r[0] == 0) std::swap(r[0], r[r[1] != 0 ? 1 : r[2] != 0 ? 2 : 3]);
  }
  OpExample skipped = call("expert 0 chosen by all, expert 4 by none and holding inf", 4, 40, 24, 5,
                           std::move(route), 1);
  for (size_t i = 2; i < 5; ++i) {
    Tensor& t = skipped.inputs[i];
    const int64_t per_expert = t.numel() / 5;
    const uint16_t inf16 = w == DType::F16 ? 0x7C00 : 0x7F80;
    for (int64_t j = 4 * per_expert; j < 5 * per_expert; j += 7) {
      if (w == DType::F32)
        t.mutable_data<float>()[j] = INFINITY;
      else
        t.mutable_data<uint16_t>()[j] = inf16;
    }
  }
  out.push_back(std::move(skipped));
  // Every route weight non-zero (a dense mixture): every expert runs for every token.
  out.push_back(
      call("dense route: every expert", 3, 32, 20, 3, uniform(DType::F32, {3, 3}, 0.1, 1, rng), 1));
  // gate and up values in the tens: silu's exp at its range, products in the hundreds.
  out.push_back(call("large activations", 2, 48, 40, 4, sparse_route(2, 4, 2, rng), 30));
  return out;
}

}  // namespace

OpDef define_moe_ffn() {
  OpDef d{Op::MoeFfn,
          "moe_ffn",
          {"x", "route", "gate", "up", "down"},
          {"out"},
          {},
          {{DType::F32}, {DType::F32}, kWeightDtypes, kWeightDtypes, kWeightDtypes},
          {-1},
          infer,
          reduction,
          {8, 8, false},
          examples};
  d.dtype_follows = {-1, -1, -1, 2, 2};
  return d;
}

}  // namespace tapml::ops

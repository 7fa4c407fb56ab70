#include "ops/rules.h"

#include <numeric>

namespace tapml::ops {

void expect_matrix(const TensorType& t, std::string_view op, const char* name) {
  TAPML_EXPECT(t.shape.rank() == 2 && t.shape[0] >= 0 && t.shape[1] > 0, op,
               std::string(name) + " must be a matrix, got " + describe(t));
}

void expect_whole_blocks(const TensorType& t, std::string_view op, const char* name) {
  const int64_t block = block_elems(t.dtype);
  TAPML_EXPECT(block == 1 || (t.shape.rank() >= 1 && t.shape.back() % block == 0), op,
               std::string(name) + " " + describe(t) + ": rows of " + std::to_string(block) +
                   "-element blocks need a last dimension that is a multiple of " +
                   std::to_string(block));
}

int64_t positive_attr(const Attrs& a, const char* name, std::string_view op) {
  int64_t v = a.get_int(name);
  TAPML_EXPECT(v > 0, op, std::string("attribute ") + name + " must be positive");
  return v;
}

int64_t no_reduction(Types, const Attrs&) { return 1; }
int64_t reduce_cols(Types in, const Attrs&) { return in[0].shape[1]; }

// The standard distributions differ between standard libraries; these draws use nothing but
// mt19937_64's output, which the standard fixes, so a seed names the same examples everywhere.
Tensor uniform(DType dtype, Shape shape, double lo, double hi, std::mt19937_64& rng) {
  std::vector<float> v(size_t(shape.numel()));
  for (float& x : v) x = float(lo + (hi - lo) * (double(rng() >> 11) * 0x1.0p-53));
  return Tensor::from_f32_as(dtype, std::move(shape), v);
}

Tensor ids(Shape shape, int32_t lo, int32_t hi, std::mt19937_64& rng) {
  Tensor t(DType::I32, std::move(shape));
  const uint64_t n = uint64_t(int64_t(hi) - lo);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.mutable_data<int32_t>()[i] = int32_t(lo + int64_t(rng() % n));
  return t;
}

Tensor counting(int64_t n, int32_t first) {
  Tensor t(DType::I32, Shape{n});
  std::iota(t.mutable_data<int32_t>(), t.mutable_data<int32_t>() + n, first);
  return t;
}

}  // namespace tapml::ops

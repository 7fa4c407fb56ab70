#include "core/shape.h"

#include "core/error.h"

namespace tapml {

void Shape::assign(const int64_t* d, size_t n) {
  TAPML_REQUIRE(n <= kMaxRank, "a tensor of " + std::to_string(n) + " dimensions (at most " +
                                   std::to_string(kMaxRank) + " are supported)");
  std::copy(d, d + n, dims_.begin());
  rank_ = n;
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int64_t d : *this) n *= d;
  return n;
}

int64_t Shape::rows() const {
  if (rank_ == 0) return 1;
  int64_t n = 1;
  for (size_t i = 0; i + 1 < rank_; ++i) n *= dims_[i];
  return n;
}

std::string Shape::str() const {
  std::string s = "[";
  for (size_t i = 0; i < rank_; ++i) {
    if (i) s += ", ";
    s += std::to_string(dims_[i]);
  }
  return s + "]";
}

}  // namespace tapml

// A tensor's dimensions, outermost first (row-major, as numpy writes them), at most kMaxRank
// of them. Kept inline, without a heap allocation: every call of a decode step copies a few
// dozen shapes (its tensors, their types, the checks), and those allocations were a tenth of
// a small model's step. A shape of more dimensions is refused with Error (model files name
// 1-4, the catalog's ops at most 3).
#pragma once
#include <algorithm>
#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace tapml {

class Shape {
 public:
  static constexpr size_t kMaxRank = 8;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.size()); }
  explicit Shape(const std::vector<int64_t>& dims) { assign(dims.data(), dims.size()); }

  size_t rank() const { return rank_; }
  int64_t operator[](size_t i) const { return dims_[i]; }
  int64_t& operator[](size_t i) { return dims_[i]; }
  int64_t back() const { return dims_[rank_ - 1]; }
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + rank_; }
  std::vector<int64_t> dims() const { return {begin(), end()}; }
  // Product of all dimensions (1 for a scalar).
  int64_t numel() const;
  // Product of all dimensions but the last: the number of rows of a row-major matrix view.
  int64_t rows() const;
  std::string str() const;  // "[3, 64]"
  bool operator==(const Shape& o) const {
    return rank_ == o.rank_ && std::equal(begin(), end(), o.begin());
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  void assign(const int64_t* d, size_t n);

  std::array<int64_t, kMaxRank> dims_{};
  size_t rank_ = 0;
};

}  // namespace tapml

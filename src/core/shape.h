// A tensor's dimensions, outermost first (row-major, as numpy writes them).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace tapml {

class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}

  size_t rank() const { return dims_.size(); }
  int64_t operator[](size_t i) const { return dims_[i]; }
  int64_t& operator[](size_t i) { return dims_[i]; }
  int64_t back() const { return dims_.back(); }
  const std::vector<int64_t>& dims() const { return dims_; }
  // Product of all dimensions (1 for a scalar).
  int64_t numel() const;
  // Product of all dimensions but the last: the number of rows of a row-major matrix view.
  int64_t rows() const;
  std::string str() const;  // "[3, 64]"
  bool operator==(const Shape& o) const { return dims_ == o.dims_; }
  bool operator!=(const Shape& o) const { return dims_ != o.dims_; }

 private:
  std::vector<int64_t> dims_;
};

}  // namespace tapml

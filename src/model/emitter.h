// What an architecture file talks to: it asks for weights and inputs and emits op calls on
// named sites. It never learns which backend runs a site; the runtime implements this.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/site.h"
#include "ops/op.h"

namespace tapml {

// A handle to a tensor value owned by the emitter (a weight, an input, an op's output).
struct Val {
  uint32_t id = 0;
  bool valid() const { return id != 0; }
};

class Emitter {
 public:
  virtual ~Emitter() = default;
  // The model weight of that GGUF name.
  virtual Val weight(const std::string& name) = 0;
  // Host data that lives for the current step (token ids, positions).
  virtual Val input(const std::string& name, Tensor data) = 0;
  // Rows [row_begin, row_begin + rows) of a value, sharing its storage.
  virtual Val rows(Val v, int64_t row_begin, int64_t rows) = 0;
  // The same bytes read as another shape of as many elements (every value is contiguous
  // and row-major), sharing its storage: [T, H*hd] as [T*H, hd], [E*H, D] as [E, H, D].
  virtual Val reshape(Val v, Shape shape) = 0;
  // Runs op on the inputs at `site`; returns the outputs (in-place outputs return a value
  // that shares the storage of the input they overwrite).
  virtual std::vector<Val> call(const Site& site, Op op, const Attrs& attrs,
                                const std::vector<Val>& inputs) = 0;
  virtual TensorType type(Val v) const = 0;
};

}  // namespace tapml

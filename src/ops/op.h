// The operator catalog: what each op means, what it takes and gives, which outputs are written
// in place, how exactly a backend must reproduce it, and sample calls that exercise it. Backends
// compute ops; the catalog is the one place that says what they must compute. Each op is
// defined in its own file (ops/<name>.cpp), whose header comment states its meaning.
//
// Inside the engine an op is an `Op` enumerator; its name appears only at the edges (the
// command line, files, the wire), through op_name() and parse_op().
#pragma once
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace tapml {

enum class Op : uint8_t {
#define TAPML_OP(id, name) id,
#include "ops/op_list.h"
#undef TAPML_OP
};

inline constexpr size_t kOpCount = 0
#define TAPML_OP(id, name) +1
#include "ops/op_list.h"
#undef TAPML_OP
    ;

std::string_view op_name(Op op);
// The op of that name, if the catalog has one.
std::optional<Op> find_op(std::string_view name);
// The same, throwing Error("unknown op 'x' (known: ...)").
Op parse_op(std::string_view name);
std::ostream& operator<<(std::ostream& os, Op op);  // the name

// Named numeric attributes of a call, in a fixed order per op.
class Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<std::string, double>> items) : items_(items) {}
  void set(const std::string& name, double value);
  bool has(std::string_view name) const;
  // Throw Error if absent.
  double get(std::string_view name) const;
  // The value, or `fallback` if absent (an optional attribute: absent means off).
  double get_or(std::string_view name, double fallback) const;
  int64_t get_int(std::string_view name) const;
  const std::vector<std::pair<std::string, double>>& items() const { return items_; }
  bool operator==(const Attrs& o) const { return items_ == o.items_; }

 private:
  std::vector<std::pair<std::string, double>> items_;
};

struct TensorType {
  DType dtype = DType::F32;
  Shape shape;
  bool operator==(const TensorType& o) const { return dtype == o.dtype && shape == o.shape; }
};
std::string describe(const TensorType& t);  // "f32 [3, 64]"

// How closely a backend must reproduce the source (check/oracle.h applies it): the
// tolerance floor is c * sqrt(K) * unit roundoff, K the reduction length. `factor` is c for
// a test whose noise floor was measured, `uncalibrated_factor` for one without; `exact` ops
// are copies and must be bit-exact. docs/oracle.md gives the measurements behind each.
struct OpTolerance {
  double factor = 0;
  double uncalibrated_factor = 0;
  bool exact = false;
};

// One sample call for the conformance suite: inputs of given dtypes chosen to reach the
// cases kernels get wrong (tails that are not a multiple of a vector width, long reductions,
// large magnitudes, the edges of the f16 range, long attention prefixes).
struct OpExample {
  std::string label;  // what it exercises: "K=4099 tail", "P=1500 prefix", ...
  Attrs attrs;
  std::vector<Tensor> inputs;
};

struct OpDef {
  Op op;
  std::string_view name;
  // The last `optional_inputs` of them may be absent: a call has the first
  // inputs.size() - optional_inputs and then none, some or all of the rest, in order.
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  // The last `optional_attrs` of them may be absent, which means 0: off.
  std::vector<std::string> attrs;
  // Per input: the dtypes it may have. Every combination is a kernel variant a backend may
  // offer; the conformance suite tries each one.
  std::vector<std::vector<DType>> input_dtypes;
  // For each output: the index of the input it overwrites, or -1 for a fresh tensor.
  std::vector<int> inplace_of;
  // Checks shapes and attribute values (count, dtypes and attribute names are checked before
  // it is called); returns the output types or throws Error naming the problem ("matmul: x
  // [3, 64] and w [48, 32] disagree on K").
  std::vector<TensorType> (*infer)(std::span<const TensorType> inputs, const Attrs& attrs);
  // The length of the reductions one output element depends on (for tolerance scaling).
  int64_t (*reduction_length)(std::span<const TensorType> inputs, const Attrs& attrs);
  OpTolerance tolerance;
  // Sample calls for one dtype combination (`dtypes` has one entry per input).
  std::vector<OpExample> (*examples)(std::span<const DType> dtypes, std::mt19937_64& rng);
  // Options a backend's kernel may lack (backend/kernel_table.h): a kernel written before
  // the catalog grew one must refuse calls that use it, never ignore it.
  int optional_inputs = 0;
  int optional_attrs = 0;
  // Per input (or empty: none): -1, or the index of an earlier input whose dtype it must
  // have (moe_ffn's up and down take gate's). dtype_combinations() leaves out the rest.
  std::vector<int> dtype_follows = {};

  size_t required_inputs() const { return inputs.size() - size_t(optional_inputs); }
  // Whether input i / attribute `name` is one of the optional ones.
  bool input_is_optional(size_t i) const { return i >= required_inputs() && i < inputs.size(); }
  bool attr_is_optional(std::string_view name) const;
};

const OpDef& op_def(Op op);
// Every op, in catalog order.
std::span<const OpDef> all_ops();

// The catalog's check of a call's inputs and attributes: the input count (optional trailing
// inputs may be left out), every dtype, no attribute the op does not take, then the op's own
// rules. Returns the output types; throws
// Error("OP: what is wrong").
std::vector<TensorType> infer_outputs(Op op, std::span<const TensorType> inputs,
                                      const Attrs& attrs);
// The same, and the outputs are exactly the ones the op gives.
void validate_types(Op op, std::span<const TensorType> inputs, const Attrs& attrs,
                    std::span<const TensorType> outputs);

// Every dtype combination of an op's inputs, optional ones included (the cartesian product
// of input_dtypes, less those that break dtype_follows). A call without its optional inputs
// has the prefix of one of them.
std::vector<std::vector<DType>> dtype_combinations(const OpDef& def);

}  // namespace tapml

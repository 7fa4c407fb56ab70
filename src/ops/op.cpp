#include "ops/op.h"

#include <algorithm>
#include <cmath>
#include <ostream>

#include "core/error.h"

namespace tapml {

namespace ops {
#define TAPML_OP(id, name) OpDef define_##name();
#include "ops/op_list.h"
#undef TAPML_OP
}  // namespace ops

namespace {

const std::vector<OpDef>& catalog() {
  static const std::vector<OpDef> defs = [] {
    std::vector<OpDef> v = {
#define TAPML_OP(id, name) ops::define_##name(),
#include "ops/op_list.h"
#undef TAPML_OP
    };
    // The table is indexed by the enumerator: a definition filed under the wrong one would
    // give every op the wrong meaning, so it is checked once here.
    for (size_t i = 0; i < v.size(); ++i) {
      const OpDef& d = v[i];
      bool ok = size_t(d.op) == i && d.inplace_of.size() == d.outputs.size() &&
                d.input_dtypes.size() == d.inputs.size() && d.optional_inputs >= 0 &&
                size_t(d.optional_inputs) <= d.inputs.size() && d.optional_attrs >= 0 &&
                size_t(d.optional_attrs) <= d.attrs.size() &&
                (d.dtype_follows.empty() || d.dtype_follows.size() == d.inputs.size());
      // An in-place output overwrites an input every call has.
      for (int alias : d.inplace_of) ok = ok && alias < int(d.required_inputs());
      for (size_t j = 0; j < d.dtype_follows.size(); ++j) ok = ok && d.dtype_follows[j] < int(j);
      TAPML_REQUIRE(ok,
                    "internal: the definition of op '" + std::string(d.name) + "' is malformed");
    }
    return v;
  }();
  return defs;
}

std::string known_ops() {
  std::string s;
  for (const OpDef& d : catalog()) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

std::string dtype_list(const std::vector<DType>& ts) {
  std::string s;
  for (size_t i = 0; i < ts.size(); ++i)
    s += std::string(i == 0               ? ""
                     : i + 1 == ts.size() ? " or "
                                          : ", ") +
         std::string(dtype_name(ts[i]));
  return s;
}

}  // namespace

void Attrs::set(const std::string& name, double value) {
  for (auto& [k, v] : items_)
    if (k == name) {
      v = value;
      return;
    }
  items_.emplace_back(name, value);
}

bool Attrs::has(std::string_view name) const {
  for (auto& [k, v] : items_)
    if (k == name) return true;
  return false;
}

double Attrs::get(std::string_view name) const {
  for (auto& [k, v] : items_)
    if (k == name) return v;
  throw Error("missing attribute '" + std::string(name) + "'");
}

double Attrs::get_or(std::string_view name, double fallback) const {
  for (auto& [k, v] : items_)
    if (k == name) return v;
  return fallback;
}

int64_t Attrs::get_int(std::string_view name) const {
  double v = get(name);
  TAPML_REQUIRE(std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15,
                "attribute '" + std::string(name) + "' must be an integer");
  return int64_t(v);
}

std::string describe(const TensorType& t) {
  return std::string(dtype_name(t.dtype)) + " " + t.shape.str();
}

std::string_view op_name(Op op) { return op_def(op).name; }

std::optional<Op> find_op(std::string_view name) {
  for (const OpDef& d : catalog())
    if (d.name == name) return d.op;
  return std::nullopt;
}

Op parse_op(std::string_view name) {
  if (std::optional<Op> op = find_op(name)) return *op;
  throw Error("unknown op '" + std::string(name) + "' (known: " + known_ops() + ")");
}

std::ostream& operator<<(std::ostream& os, Op op) { return os << op_name(op); }

const OpDef& op_def(Op op) {
  const std::vector<OpDef>& defs = catalog();
  TAPML_REQUIRE(size_t(op) < defs.size(),
                "internal: op " + std::to_string(int(op)) + " is not in the catalog");
  return defs[size_t(op)];
}

std::span<const OpDef> all_ops() { return catalog(); }

bool OpDef::attr_is_optional(std::string_view a) const {
  for (size_t i = attrs.size() - size_t(optional_attrs); i < attrs.size(); ++i)
    if (attrs[i] == a) return true;
  return false;
}

std::vector<TensorType> infer_outputs(Op op, std::span<const TensorType> in, const Attrs& attrs) {
  const OpDef& d = op_def(op);
  const std::string name(d.name);
  const size_t least = d.required_inputs(), most = d.inputs.size();
  TAPML_REQUIRE(in.size() >= least && in.size() <= most,
                name + ": takes " +
                    (least == most ? std::to_string(most)
                                   : std::to_string(least) + " to " + std::to_string(most)) +
                    " inputs, got " + std::to_string(in.size()));
  for (size_t i = 0; i < in.size(); ++i) {
    const std::vector<DType>& ok = d.input_dtypes[i];
    TAPML_REQUIRE(
        std::find(ok.begin(), ok.end(), in[i].dtype) != ok.end(),
        name + ": " + d.inputs[i] + " must be " + dtype_list(ok) + ", got " + describe(in[i]));
    if (i < d.dtype_follows.size() && d.dtype_follows[i] >= 0) {
      const size_t lead = size_t(d.dtype_follows[i]);
      TAPML_REQUIRE(in[i].dtype == in[lead].dtype,
                    name + ": " + d.inputs[i] + " must have " + d.inputs[lead] + "'s dtype " +
                        std::string(dtype_name(in[lead].dtype)) + ", got " + describe(in[i]));
    }
  }
  for (const auto& [k, v] : attrs.items())
    TAPML_REQUIRE(std::find(d.attrs.begin(), d.attrs.end(), k) != d.attrs.end(),
                  name + ": unknown attribute '" + k + "'");
  try {
    return d.infer(in, attrs);
  } catch (const Error& e) {
    // Attrs::get does not know the op; every message a user sees names it.
    std::string what = e.what();
    if (what.rfind(name + ":", 0) == 0) throw;
    throw Error(name + ": " + what);
  }
}

void validate_types(Op op, std::span<const TensorType> in, const Attrs& attrs,
                    std::span<const TensorType> out) {
  std::vector<TensorType> want = infer_outputs(op, in, attrs);
  const OpDef& d = op_def(op);
  TAPML_REQUIRE(out.size() == want.size(),
                std::string(d.name) + ": gives " + std::to_string(want.size()) +
                    " outputs, the call has " + std::to_string(out.size()));
  for (size_t i = 0; i < out.size(); ++i)
    TAPML_REQUIRE(out[i] == want[i], std::string(d.name) + ": output " + d.outputs[i] + " is " +
                                         describe(out[i]) + ", the op gives " + describe(want[i]));
}

std::vector<std::vector<DType>> dtype_combinations(const OpDef& def) {
  std::vector<std::vector<DType>> out{{}};
  for (size_t i = 0; i < def.input_dtypes.size(); ++i) {
    const int lead = i < def.dtype_follows.size() ? def.dtype_follows[i] : -1;
    std::vector<std::vector<DType>> next;
    for (const auto& prefix : out)
      for (DType t : def.input_dtypes[i]) {
        if (lead >= 0 && prefix[size_t(lead)] != t) continue;
        next.push_back(prefix);
        next.back().push_back(t);
      }
    out = std::move(next);
  }
  return out;
}

}  // namespace tapml

#include "carve/test_case.h"

#include <sstream>

namespace tapml {

std::string call_signature(Op op, const Attrs& attrs, const std::vector<Tensor>& inputs,
                           const std::vector<Tensor>& outputs) {
  std::ostringstream s;
  s.precision(17);
  s << op_name(op) << "(";
  for (auto& [k, v] : attrs.items()) s << k << "=" << v << ",";
  s << ")";
  for (const Tensor& t : inputs) s << " " << dtype_name(t.dtype()) << t.shape().str();
  s << " ->";
  for (const Tensor& t : outputs) s << " " << dtype_name(t.dtype()) << t.shape().str();
  return s.str();
}

std::string TestCase::signature() const { return call_signature(op, attrs, inputs, outputs); }

TestOutline outline(const TestCase& t) {
  TestOutline o{t.id, t.op, t.attrs, t.site, t.phase, t.prompt_index, {}, {}, t.kept_because};
  for (const Tensor& x : t.inputs) o.inputs.push_back({x.dtype(), x.shape()});
  for (const Tensor& x : t.outputs) o.outputs.push_back({x.dtype(), x.shape()});
  return o;
}

bool is_twin(std::string_view kept_because) {
  return kept_because.starts_with(kTwinReason) &&
         (kept_because.size() == kTwinReason.size() || kept_because[kTwinReason.size()] == ':');
}

}  // namespace tapml

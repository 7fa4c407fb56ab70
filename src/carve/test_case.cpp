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

}  // namespace tapml

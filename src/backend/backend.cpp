#include "backend/backend.h"

#include "core/error.h"

namespace tapml {

namespace {

std::vector<TensorType> types(const std::vector<DeviceTensor>& ts) {
  std::vector<TensorType> out;
  out.reserve(ts.size());
  for (const DeviceTensor& t : ts) out.push_back(t.type());
  return out;
}

}  // namespace

bool overlap(const DeviceTensor& a, const DeviceTensor& b) {
  return a.buffer == b.buffer && a.nbytes() > 0 && b.nbytes() > 0 &&
         a.offset < b.offset + b.nbytes() && b.offset < a.offset + a.nbytes();
}

void validate(const OpCall& call) {
  std::vector<TensorType> in = types(call.inputs), out = types(call.outputs);
  validate_types(call.op, in, call.attrs, out);
  const OpDef& d = op_def(call.op);
  const std::string name(d.name);
  for (size_t i = 0; i < call.outputs.size(); ++i) {
    const DeviceTensor& o = call.outputs[i];
    const int alias = d.inplace_of[i];
    if (alias >= 0) {
      const DeviceTensor& x = call.inputs[size_t(alias)];
      TAPML_REQUIRE(o.buffer == x.buffer && o.offset == x.offset,
                    name + ": in-place output " + d.outputs[i] + " must name the bytes of input " +
                        d.inputs[size_t(alias)]);
      continue;
    }
    for (size_t j = 0; j < call.inputs.size(); ++j)
      TAPML_REQUIRE(!overlap(o, call.inputs[j]), name + ": output " + d.outputs[i] +
                                                     " overlaps input " + d.inputs[j] +
                                                     " (only in-place outputs may)");
    for (size_t j = 0; j < i; ++j)
      TAPML_REQUIRE(!overlap(o, call.outputs[j]),
                    name + ": outputs " + d.outputs[j] + " and " + d.outputs[i] + " overlap");
  }
}

}  // namespace tapml

#include "backend/kernel_table.h"

#include <algorithm>

#include "core/error.h"

namespace tapml {

namespace {

bool named(const std::vector<std::string>& list, std::string_view name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

// The first option the call uses that `options` lacks, or "".
std::string missing_option(const OpDef& d, const OpCall& call,
                           const std::vector<std::string>& options) {
  // (A call with more inputs than the op has fails validation first; bounded all the same.)
  for (size_t i = d.required_inputs(); i < call.inputs.size() && i < d.inputs.size(); ++i)
    if (!named(options, d.inputs[i])) return d.inputs[i];
  for (const auto& [k, v] : call.attrs.items())
    if (d.attr_is_optional(k) && v != 0 && !named(options, k)) return k;
  return "";
}

}  // namespace

void KernelTable::add(Op op, Kernel kernel, std::vector<std::vector<DType>> dtypes,
                      std::vector<std::string> options) {
  const OpDef& d = op_def(op);
  TAPML_REQUIRE(
      dtypes.empty() || (dtypes.size() >= d.required_inputs() && dtypes.size() <= d.inputs.size()),
      "internal: a kernel for " + std::string(d.name) + " lists dtypes for " +
          std::to_string(dtypes.size()) + " of its " + std::to_string(d.inputs.size()) + " inputs");
  for (const std::string& o : options) {
    bool input = false;
    for (size_t i = 0; i < d.inputs.size(); ++i)
      input = input || (d.input_is_optional(i) && d.inputs[i] == o);
    TAPML_REQUIRE(input || d.attr_is_optional(o), "internal: a kernel for " + std::string(d.name) +
                                                      " implements '" + o +
                                                      "', which is not an option of the op");
  }
  entries_[size_t(op)].push_back({std::move(dtypes), std::move(options), std::move(kernel)});
}

const KernelTable::Kernel* KernelTable::find(const OpCall& call, const std::string& backend,
                                             std::string* why) const {
  const std::vector<Entry>& list = entries_[size_t(call.op)];
  const OpDef& d = op_def(call.op);
  bool dtypes_fit = false;  // by some kernel that lacks an option the call uses
  std::string lacking;
  for (const Entry& e : list) {
    bool fits = true;
    for (size_t i = 0; fits && i < call.inputs.size(); ++i)
      fits = i < e.dtypes.size() ? std::find(e.dtypes[i].begin(), e.dtypes[i].end(),
                                             call.inputs[i].dtype) != e.dtypes[i].end()
                                 : !is_block(call.inputs[i].dtype);
    if (!fits) continue;
    std::string missing = missing_option(d, call, e.options);
    if (missing.empty()) return &e.kernel;
    if (!dtypes_fit) lacking = missing;
    dtypes_fit = true;
  }
  if (why) {
    *why = backend + ": no kernel for " + std::string(op_name(call.op));
    if (dtypes_fit) {
      *why += " with " + lacking;
    } else if (!list.empty()) {
      // Name the dtypes the call has, which no kernel of the op takes.
      std::string with;
      for (size_t i = 0; i < call.inputs.size() && i < d.inputs.size(); ++i)
        with += (with.empty() ? " with " : ", ") + d.inputs[i] + " " +
                std::string(dtype_name(call.inputs[i].dtype));
      *why += with;
    }
  }
  return nullptr;
}

void KernelTable::run(const OpCall& call, const std::string& backend) const {
  std::string why;
  const Kernel* k = find(call, backend, &why);
  TAPML_REQUIRE(k != nullptr, why);
  (*k)(call);
}

}  // namespace tapml

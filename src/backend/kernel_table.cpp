#include "backend/kernel_table.h"

#include <algorithm>

#include "core/error.h"

namespace tapml {

void KernelTable::add(Op op, Kernel kernel, std::vector<std::vector<DType>> dtypes) {
  const OpDef& d = op_def(op);
  TAPML_REQUIRE(dtypes.empty() || dtypes.size() == d.inputs.size(),
                "internal: a kernel for " + std::string(d.name) + " lists dtypes for " +
                    std::to_string(dtypes.size()) + " of its " + std::to_string(d.inputs.size()) +
                    " inputs");
  entries_[size_t(op)].push_back({std::move(dtypes), std::move(kernel)});
}

const KernelTable::Kernel* KernelTable::find(const OpCall& call, const std::string& backend,
                                             std::string* why) const {
  const std::vector<Entry>& list = entries_[size_t(call.op)];
  for (const Entry& e : list) {
    bool fits = e.dtypes.empty() || e.dtypes.size() == call.inputs.size();
    for (size_t i = 0; fits && i < e.dtypes.size(); ++i)
      fits = std::find(e.dtypes[i].begin(), e.dtypes[i].end(), call.inputs[i].dtype) !=
             e.dtypes[i].end();
    if (fits) return &e.kernel;
  }
  if (why) {
    *why = backend + ": no kernel for " + std::string(op_name(call.op));
    if (!list.empty()) {
      // Name the dtypes the call has, which no kernel of the op takes.
      const OpDef& d = op_def(call.op);
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

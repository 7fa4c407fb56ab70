// A backend's kernels: for each op, the input dtypes a kernel takes and the function that runs
// it. A backend's supports() and run() follow from its table, so a call whose op or dtypes
// have no kernel is refused with the reason ("cpu: no kernel for matmul with w q4_0"), never
// run as something else. A new op reaches a backend as one add() line and the kernel itself.
#pragma once
#include <array>
#include <functional>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace tapml {

class KernelTable {
 public:
  using Kernel = std::function<void(const OpCall&)>;

  // `dtypes`: per input, the dtypes this kernel takes; empty means every dtype the catalog
  // allows except the quantized block types, which a kernel must name to take: a kernel
  // written for float weights would otherwise read blocks as floats. It may stop after the
  // op's required inputs; a list for an optional input applies when the call has it. Several
  // kernels of one op may split its dtype combinations between them. `options`: the optional inputs
  // and attributes of the op (OpDef::optional_inputs, optional_attrs) that the kernel implements. A
  // call that has an optional input, or an optional attribute other than 0, that the kernel does
  // not name is refused ("vulkan: no kernel for rope with freq_factors"): a kernel written before
  // the catalog grew an option would otherwise compute the op without it.
  void add(Op op, Kernel kernel, std::vector<std::vector<DType>> dtypes = {},
           std::vector<std::string> options = {});
  // A member function of the backend as the kernel.
  template <class B>
  void add(Op op, B* backend, void (B::*kernel)(const OpCall&),
           std::vector<std::vector<DType>> dtypes = {}, std::vector<std::string> options = {}) {
    add(
        op, [backend, kernel](const OpCall& c) { (backend->*kernel)(c); }, std::move(dtypes),
        std::move(options));
  }

  // The kernel for the call's op and input dtypes, or nullptr with the reason in *why
  // (`backend` names the backend in it).
  const Kernel* find(const OpCall& call, const std::string& backend, std::string* why) const;
  // Runs the call's kernel; throws Error when there is none.
  void run(const OpCall& call, const std::string& backend) const;
  bool has(Op op) const { return !entries_[size_t(op)].empty(); }

 private:
  struct Entry {
    std::vector<std::vector<DType>> dtypes;
    std::vector<std::string> options;
    Kernel kernel;
  };
  std::array<std::vector<Entry>, kOpCount> entries_;
};

}  // namespace tapml

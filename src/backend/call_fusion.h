// Holding calls back so that neighbours run as one kernel. A decode step is ~16 small calls
// per layer, and on some APIs a launch costs more host time than its kernel takes (NVIDIA's
// OpenCL: 6-14 us each) or needs a barrier of its own. A backend that can fuse offers every
// call here first; this decides what to hold and when a held group is complete:
//   rmsnorm, then matmuls of its output        one group, the norm computed inside it
//   one-row matmuls of the same input (q, k, v) one group of up to three
//   matmul, matmul, swiglu of their outputs    one group with swiglu (gate, up)
//   matmul, add of its output and another      one group with the add (a residual)
//   rope, rope with the same positions         one rope launch (q, k)
// Anything else, and the backend's write(), read(), sync() and free() of a held buffer, flush
// what is held first, so calls still run in order. A fused launch writes every output of
// the calls it covers, as unfused calls would. The backend decides which calls it can take
// into a group (alignment, dtypes, limits) and launches the groups.
#pragma once
#include <functional>
#include <optional>
#include <vector>

#include "backend/backend.h"

namespace tapml {

struct FusedGroup {
  enum Epilogue { None, Swiglu, Add };
  Epilogue epilogue = None;
  std::optional<OpCall> norm;   // rmsnorm whose output is the matmuls' input, or none
  std::vector<OpCall> matmuls;  // 1-3 matmuls of one input; Swiglu: 2 (gate, up); Add: 1
  OpCall tail;                  // the swiglu or add call (epilogue != None)
  // Add: the tail's input that is not the matmul's output.
  const DeviceTensor& residual() const;
};

class CallFusion {
 public:
  struct Hooks {
    // An rmsnorm the backend could compute inside a matmul group (one row, f32 weight...).
    std::function<bool(const OpCall&)> can_hold_norm;
    // A matmul the backend can take into a group; with_norm: fed by a held norm.
    std::function<bool(const OpCall&, bool with_norm)> can_hold_matmul;
    std::function<void(FusedGroup&)> launch_group;
    // One rope call, or two sharing positions and frequencies (second non-null).
    std::function<void(const OpCall&, const OpCall* second)> launch_rope;
    // A call as it is (a held call that found no partner).
    std::function<void(const OpCall&)> run;
  };
  explicit CallFusion(Hooks hooks) : hooks_(std::move(hooks)) {}

  // True: the call is held, or ran fused with what was held. False: what was held has been
  // launched; run the call as it is.
  bool offer(const OpCall& c);
  // Launches whatever is held, in call order.
  void flush();
  // Whether a held call uses this buffer.
  bool holds(BufferId id) const;

 private:
  bool norm_feeds_group() const;
  bool touches_shared(const DeviceTensor& out) const;
  void launch(FusedGroup::Epilogue e, const OpCall* tail);

  Hooks hooks_;
  std::optional<OpCall> norm_, rope_;
  std::vector<OpCall> matmuls_;
};

}  // namespace tapml

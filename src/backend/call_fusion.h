// Holding calls back so that neighbours run as one kernel. A decode step is ~16 small calls
// per layer, and on some APIs a launch costs more host time than its kernel takes (NVIDIA's
// OpenCL: 6-14 us each) or needs a barrier of its own. A backend that can fuse offers every
// call here first; this decides what to hold and when a held group is complete:
//   rmsnorm, then matmuls of its output        one group, the norm computed inside it
//   one-row matmuls of the same input (q, k, v) one group of up to three
//   matmul, matmul, swiglu of their outputs    one group with swiglu (gate, up)
//   matmul, add of its output and another      one group with the add (a residual)
//   rope, rope with the same positions         one rope launch (q, k)
//   rope q, rope k, kv_store of k, attention   one launch (AttentionChain; one query row,
//                                              where the backend offers it)
//   that chain, the matmul of its output and   one launch, where the backend takes them in
//   the add of that and a residual             (the output projection, split over heads)
//   a swiglu group, the matmul of its output   one launch, where the backend takes them in
//   and the add of that and a residual         (the down projection, split over hidden rows)
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
  // Swiglu, where the backend takes them in (Hooks::can_launch_ffn): the one-row matmul of
  // the swiglu's output (the down projection) and the add of its output and a residual.
  std::optional<OpCall> down, add;
  // Add: the tail's input that is not the matmul's output; with `add`, add's input that is
  // not down's output.
  const DeviceTensor& residual() const;
};

// A decode step's attention from its rotary embedding on: rope q and rope k (one row, same
// positions), kv_store of the rotated k (and v), attention of the rotated q over the caches'
// first rows. The backend checks what only it can (the positions, its kernel's limits).
// With `proj` and `add` set, also the output projection (a one-row matmul of attention's
// output) and the residual add of its output: the backend is asked again with them.
struct AttentionChain {
  OpCall rope_q, rope_k, kv_store, attention;
  std::optional<OpCall> proj, add;
  // Add: its input that is not proj's output.
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
    // Optional (both or neither): whether the backend can launch this chain as one, and the
    // launch. Without them a rope pair launches as soon as it is complete.
    std::function<bool(const AttentionChain&)> can_launch_attention;
    std::function<void(const AttentionChain&)> launch_attention;
    // Optional: whether the backend can launch this swiglu group with its `down` and `add`
    // (launch_group then gets it). With it a complete swiglu group is held for them; without
    // it the group launches as soon as it is complete.
    std::function<bool(const FusedGroup&)> can_launch_ffn;
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
  FusedGroup take_group(FusedGroup::Epilogue e, const OpCall* tail);
  void launch(FusedGroup::Epilogue e, const OpCall* tail);

  bool chain_fits(const OpCall& attention) const;
  bool proj_fits(const OpCall& matmul) const;
  bool add_fits(const OpCall& add) const;
  // Launches the held chain without its projection, which goes on as an ordinary call.
  void release_chain();

  bool down_fits(const OpCall& matmul) const;
  bool ffn_add_fits(const OpCall& add) const;
  // Launches the held swiglu group without its down projection, which goes on as an ordinary
  // call.
  void release_ffn();

  // A copy of c in a recycled OpCall: held calls are copied on every decode step, and copies
  // into kept vectors and strings reuse their capacity instead of allocating.
  OpCall copy_of(const OpCall& c);
  void recycle(OpCall& c);
  void recycle(std::optional<OpCall>& c);
  // The calls of a launched group, and its matmul list's capacity for the next group.
  void recycle(FusedGroup& g);

  Hooks hooks_;
  std::vector<OpCall> spare_;
  std::optional<OpCall> norm_, rope_;
  std::optional<OpCall> rope_k_, kv_;    // held for an attention chain after a rope pair
  std::optional<AttentionChain> chain_;  // a launchable chain, held for its projection
  std::optional<FusedGroup> ffn_;        // a complete swiglu group, held for its down projection
  std::vector<OpCall> matmuls_;
};

}  // namespace tapml

// The Dispatcher runs a model's op calls: it looks each site up in the Placement, makes sure
// the inputs live on that backend (weights are uploaded once per backend; activations move
// only when their consumer lives elsewhere), tells observers before the call (inputs
// readable, before any in-place write) and after it (outputs readable), and runs it.
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "model/emitter.h"
#include "model/model_file.h"
#include "runtime/device_pool.h"
#include "runtime/placement.h"

namespace tapml {

class Dispatcher;

// One op call as observers see it.
struct CallEvent {
  uint64_t index = 0;            // call number since the dispatcher was made
  Site site;                     // {3, "attn_q"}; call->site holds its string form
  Phase phase;                   // as set by the session
  std::string backend;           // URI of the backend that runs it
  const OpCall* call = nullptr;  // device tensors on that backend
  std::vector<Val> inputs, outputs;
};

class CallObserver {
 public:
  virtual ~CallObserver() = default;
  // Inputs are readable through d.read(); in-place outputs still hold their old contents.
  virtual void before_call(const CallEvent& e, Dispatcher& d) {}
  // Outputs are readable through d.read().
  virtual void after_call(const CallEvent& e, Dispatcher& d) {}
};

// Bytes and counts that crossed into each backend, by kind.
struct TransferStats {
  int64_t weight_uploads = 0, weight_bytes = 0;        // host -> backend, weights
  int64_t input_uploads = 0, input_bytes = 0;          // host -> backend, step inputs
  int64_t activation_moves = 0, activation_bytes = 0;  // backend -> backend, via host
  int64_t calls = 0;
};

class Dispatcher final : public Emitter {
 public:
  // `weights` and `pool` must outlive the dispatcher. Backends are opened through the pool
  // on first use, and weights are uploaded to a backend through it (so once per process).
  Dispatcher(const std::map<std::string, Tensor>& weights, Placement placement, DevicePool& pool);
  ~Dispatcher() override;

  // Emitter.
  Val weight(const std::string& name) override;
  Val input(const std::string& name, Tensor data) override;
  Val rows(Val v, int64_t row_begin, int64_t rows) override;
  Val reshape(Val v, Shape shape) override;
  std::vector<Val> call(const Site& site, Op op, const Attrs& attrs,
                        const std::vector<Val>& inputs) override;
  TensorType type(Val v) const override;

  // A zero-filled value that survives end_step() (the KV cache).
  Val persistent(const std::string& name, DType dtype, Shape shape);
  // Frees every value made since the last end_step() that is not persistent or a weight.
  void end_step();

  // Copies a value to the host (from wherever a valid copy lives).
  Tensor read(Val v);
  // The same as floats (to_f32), read straight into the result when the value is f32: a
  // decode step's logits, read once per token.
  std::vector<float> read_f32(Val v);
  // The model weight a value is (its GGUF name), or "" for anything else, a part of a
  // weight (rows) or a weight read as another shape (reshape) included: those are not the
  // tensor the model file holds under that name.
  std::string weight_name(Val v) const;
  // The model's own host tensor of a weight value (no copy; its bytes identify the weight
  // to DevicePool::weight). Error for a value that is not a weight.
  const Tensor& weight_tensor(Val v) const;

  void set_phase(Phase phase) { phase_ = phase; }
  Phase phase() const { return phase_; }
  void add_observer(CallObserver* o) { observers_.push_back(o); }
  void remove_observer(CallObserver* o);

  const Placement& placement() const { return placement_; }
  // The backend for a URI (opened once, by the pool).
  Backend& backend(const std::string& uri);
  DevicePool& pool() { return pool_; }
  const std::map<std::string, TransferStats>& stats() const { return stats_; }
  uint64_t calls_made() const { return next_call_; }

 private:
  struct Storage;  // bytes of a value on the backends that hold a valid copy
  enum class StorageKind { Weight, Input, Activation, Persistent };
  // A counted reference to a Storage; the last one gives it back to the dispatcher's spares
  // (its buffers freed), so a decode step's outputs reuse the previous step's records.
  class StorageRef {
   public:
    StorageRef() = default;
    explicit StorageRef(Storage* s);
    StorageRef(const StorageRef& o);
    StorageRef(StorageRef&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
    StorageRef& operator=(StorageRef o) noexcept {
      std::swap(s_, o.s_);
      return *this;
    }
    ~StorageRef() { reset(); }
    void reset();
    Storage* get() const { return s_; }
    Storage* operator->() const { return s_; }
    Storage& operator*() const { return *s_; }
    explicit operator bool() const { return s_ != nullptr; }
    bool operator==(const StorageRef& o) const { return s_ == o.s_; }

   private:
    Storage* s_ = nullptr;
  };
  struct Value {
    TensorType type;
    StorageRef storage;
    size_t offset = 0;  // bytes into the storage
    bool step_scoped = true;
  };
  // A Storage of this kind, from the spares when there is one.
  StorageRef new_storage(StorageKind kind, const std::string& name, size_t bytes);

  // What the call at the same place in the previous step worked out, kept while a call
  // repeats it (same op, site, attributes, input types and input aliasing): a decode step
  // makes the same calls in the same order, and working these out again (the site's text,
  // placement, output types, the backend's support check) was most of a small model's
  // host time per call. Valid once the backend has accepted the call.
  struct CallPlan {
    bool valid = false;
    Site site;
    std::vector<TensorType> in_types;
    // Per input: the first input sharing its storage (itself when none) and its offset, so
    // a call whose inputs alias differently (what validate() checks) is worked out again.
    std::vector<std::pair<size_t, size_t>> in_alias;
    const std::string* uri = nullptr;  // owned by placement_
    std::vector<TensorType> out_types;
    // The op, attributes and site's text as the backend gets them; the tensors are filled
    // in on each call (the vectors keep their capacity).
    OpCall call;
  };
  // Whether `plan` was made for this call's inputs.
  bool plan_matches(const CallPlan& plan, const std::vector<Val>& inputs) const;
  // CallPlan::in_alias's entry for input i: the first input sharing its storage, its offset.
  std::pair<size_t, size_t> alias_of(const std::vector<Val>& inputs, size_t i) const;

  Val add_value(Value v);
  Value& value(Val v);
  const Value& value(Val v) const;
  // The backend for a URI and its transfer counters (the last one asked for is kept: a
  // model's calls mostly go to one backend, and this is asked once per call and input).
  std::pair<Backend*, TransferStats*> open(const std::string& uri);
  // Copies the value's bytes to dst (from wherever a valid copy lives).
  void read_into(const Value& val, void* dst, size_t bytes);
  // A device tensor for `v` on backend `b`, moving bytes there first if needed.
  DeviceTensor place(Val v, Backend& b, TransferStats& st);

  const std::map<std::string, Tensor>& weights_;
  Placement placement_;
  DevicePool& pool_;
  std::map<std::string, TransferStats> stats_;
  std::vector<Value> values_;  // index = Val.id - 1; freed slots keep an empty storage
  std::vector<uint32_t> step_values_;
  std::unordered_map<std::string, Val> weight_vals_;
  std::vector<CallObserver*> observers_;
  std::vector<std::unique_ptr<Storage>> spare_storage_;
  Phase phase_;
  uint64_t next_call_ = 0;
  std::deque<CallPlan> plans_;  // by call number within the step (references stay valid)
  size_t step_call_ = 0;
  std::string last_uri_;
  std::pair<Backend*, TransferStats*> last_{nullptr, nullptr};
};

}  // namespace tapml

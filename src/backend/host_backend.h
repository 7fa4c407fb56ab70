// A base for backends whose buffers live in host memory (ref, cpu): buffer bookkeeping,
// bounds-checked access, and support checks that follow from the catalog and the kernel
// table. Subclasses add their kernels to kernels() in their constructor.
#pragma once
#include <cstddef>
#include <memory>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "backend/kernel_table.h"

namespace tapml {

class HostBackend : public Backend {
 public:
  explicit HostBackend(BackendInfo info) : info_(std::move(info)) {}
  ~HostBackend() override;
  HostBackend(const HostBackend&) = delete;  // owns its buffers' memory
  HostBackend& operator=(const HostBackend&) = delete;
  const BackendInfo& info() const override { return info_; }

  BufferId alloc(size_t bytes) override;
  void free(BufferId id) override;
  void write(BufferId id, size_t offset, const void* src, size_t bytes) override;
  void read(BufferId id, size_t offset, void* dst, size_t bytes) override;
  // validate(call), then a kernel for its op and dtypes.
  Support supports(const OpCall& call) const override;
  // Checks that every tensor lies inside its buffer, then execute()s it. Expects a call that
  // supports() accepts.
  void run(const OpCall& call) override;

  size_t bytes_allocated() const { return allocated_; }
  // Live buffers and freed ones kept for reuse, as allocated (rounded up).
  size_t bytes_held() const { return live_ + spare_bytes_; }

 protected:
  // The host address of a tensor (already bounds-checked by run()).
  std::byte* ptr(const DeviceTensor& t) const;
  template <class T>
  T* data(const DeviceTensor& t) const {
    return reinterpret_cast<T*>(ptr(t));
  }
  KernelTable& kernels() { return kernels_; }
  // A call that run() has checked: its kernel. A subclass may hold it back to run later with
  // its neighbours.
  virtual void execute(const OpCall& call) { kernels_.run(call, info_.name); }

  BackendInfo info_;

 private:
  struct Block {
    std::byte* bytes = nullptr;  // null: a free slot
    size_t size = 0;
    size_t capacity = 0;  // rounded allocation size
    uint32_t generation = 0;
  };
  // The slot of a live buffer (Error naming `what` for any other id).
  size_t slot_of(BufferId id, const char* what) const;
  const Block& block(BufferId id, const char* what) const { return blocks_[slot_of(id, what)]; }
  KernelTable kernels_;
  // Buffers by slot; an id is the slot + 1 in its low 32 bits and the slot's generation
  // above them, so an id used after its free() is refused even once the slot is reused.
  std::vector<Block> blocks_;
  std::vector<uint32_t> free_slots_;
  size_t allocated_ = 0;
  // Freed allocations kept for reuse by capacity: a decode step frees and allocates the
  // same activation sizes every time, and the C allocator dominated small models; a long
  // prefill's activations, handed back to the system after each forward, were faulted in
  // again by the next. Live plus spare capacity stays within the larger of the live peak
  // and a floor: a miss first frees spares of other sizes to make room.
  std::unordered_map<size_t, std::vector<std::byte*>> spare_;
  size_t spare_bytes_ = 0;
  size_t live_ = 0;  // capacity of the live buffers
  size_t peak_ = 0;  // the most live_ has been
  // Frees spare allocations until live + spare + `more` fits the bound.
  void trim_spares(size_t more);
};

}  // namespace tapml

// A backend that hands everything to an inner backend. Wrappers (fault injection, test
// doubles, instrumentation) derive from it and override only what they change; buffer ids
// are the inner backend's.
#pragma once
#include <memory>

#include "backend/backend.h"

namespace tapml {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}

  const BackendInfo& info() const override { return inner_->info(); }
  BufferId alloc(size_t bytes) override { return inner_->alloc(bytes); }
  void free(BufferId id) override { inner_->free(id); }
  void write(BufferId id, size_t offset, const void* src, size_t bytes) override {
    inner_->write(id, offset, src, bytes);
  }
  void read(BufferId id, size_t offset, void* dst, size_t bytes) override {
    inner_->read(id, offset, dst, bytes);
  }
  Support supports(const OpCall& call) const override { return inner_->supports(call); }
  void run(const OpCall& call) override { inner_->run(call); }
  void sync() override { inner_->sync(); }

 protected:
  Backend& inner() const { return *inner_; }
  // Destroys the inner backend now, for a wrapper whose own members must outlive it (the
  // process serving it); only a destructor may call it.
  void release_inner() { inner_.reset(); }

 private:
  std::unique_ptr<Backend> inner_;
};

}  // namespace tapml

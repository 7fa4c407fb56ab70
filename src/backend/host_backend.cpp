#include "backend/host_backend.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/error.h"

namespace tapml {

namespace {
// 64-byte alignment keeps every row start usable by wide SIMD loads.
constexpr size_t kAlign = 64;
constexpr size_t kSpareLimit = size_t(256) << 20;
void free_aligned(std::byte* p) { std::free(p); }
}  // namespace

HostBackend::~HostBackend() {
  for (auto& [size, ptrs] : spare_)
    for (std::byte* p : ptrs) std::free(p);
}

BufferId HostBackend::alloc(size_t bytes) {
  TAPML_REQUIRE(bytes <= info_.max_buffer_bytes,
                info_.name + ": buffer of " + std::to_string(bytes) +
                    " bytes exceeds the limit of " + std::to_string(info_.max_buffer_bytes));
  size_t rounded = (std::max<size_t>(bytes, 1) + kAlign - 1) / kAlign * kAlign;
  std::byte* p = nullptr;
  if (auto it = spare_.find(rounded); it != spare_.end() && !it->second.empty()) {
    p = it->second.back();
    it->second.pop_back();
    spare_bytes_ -= rounded;
  } else {
    p = static_cast<std::byte*>(std::aligned_alloc(kAlign, rounded));
  }
  TAPML_REQUIRE(p != nullptr,
                info_.name + ": out of host memory allocating " + std::to_string(bytes) + " bytes");
  BufferId id = next_id_++;
  Block& b = blocks_[id];
  b.bytes = {p, free_aligned};
  b.size = bytes;
  b.capacity = rounded;
  allocated_ += bytes;
  return id;
}

void HostBackend::free(BufferId id) {
  auto it = blocks_.find(id);
  TAPML_REQUIRE(it != blocks_.end(), info_.name + ": free of unknown buffer " + std::to_string(id));
  Block& b = it->second;
  allocated_ -= b.size;
  if (spare_bytes_ + b.capacity <= kSpareLimit) {
    spare_[b.capacity].push_back(b.bytes.release());
    spare_bytes_ += b.capacity;
  }
  blocks_.erase(it);
}

const HostBackend::Block& HostBackend::block(BufferId id, const char* what) const {
  auto it = blocks_.find(id);
  TAPML_REQUIRE(it != blocks_.end(),
                info_.name + ": " + what + " of unknown buffer " + std::to_string(id));
  return it->second;
}

void HostBackend::write(BufferId id, size_t offset, const void* src, size_t bytes) {
  const Block& b = block(id, "write");
  TAPML_REQUIRE(offset <= b.size && bytes <= b.size - offset,
                info_.name + ": write past the end of buffer " + std::to_string(id));
  if (bytes) std::memcpy(b.bytes.get() + offset, src, bytes);
}

void HostBackend::read(BufferId id, size_t offset, void* dst, size_t bytes) {
  const Block& b = block(id, "read");
  TAPML_REQUIRE(offset <= b.size && bytes <= b.size - offset,
                info_.name + ": read past the end of buffer " + std::to_string(id));
  if (bytes) std::memcpy(dst, b.bytes.get() + offset, bytes);
}

Support HostBackend::supports(const OpCall& call) const {
  try {
    validate(call);
  } catch (const Error& e) {
    return Support::no(e.what());
  }
  std::string why;
  if (!kernels_.find(call, info_.name, &why)) return Support::no(why);
  return Support::yes();
}

std::byte* HostBackend::ptr(const DeviceTensor& t) const {
  return block(t.buffer, "access").bytes.get() + t.offset;
}

void HostBackend::run(const OpCall& call) {
  auto check = [&](const DeviceTensor& t) {
    const Block& b = block(t.buffer, "run");
    if (t.offset > b.size || t.nbytes() > b.size - t.offset)
      throw Error(info_.name + ": " + std::string(op_name(call.op)) + " tensor " + t.shape.str() +
                  " at offset " + std::to_string(t.offset) + " lies outside buffer " +
                  std::to_string(t.buffer));
  };
  for (auto& t : call.inputs) check(t);
  for (auto& t : call.outputs) check(t);
  execute(call);
}

}  // namespace tapml

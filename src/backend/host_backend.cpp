#include "backend/host_backend.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <new>
#include <string_view>

#include "core/error.h"

namespace tapml {

namespace {
// 64-byte alignment keeps every row start usable by wide SIMD loads.
constexpr size_t kAlign = 64;
// Spares are kept up to the live peak, or up to this much when the peak is lower.
constexpr size_t kSpareFloor = size_t(256) << 20;
// From this size a buffer starts on a 2 MiB boundary and asks the kernel for transparent huge
// pages (where it grants them only on request, Debian's and Ubuntu's default): one fault per
// 2 MiB instead of per 4 KiB, fewer TLB misses while matmuls stream weights. 2-core VM, 125M
// f32 e2e_bench -p 1024 -r 3: 424K page faults -> 172K, 7.7 -> 5.5-5.9 s wall, prefill +9%;
// on a 16-core Xeon no difference outside its noise (TAPML_HUGE_PAGES=0 to compare).
constexpr size_t kHugePage = size_t(2) << 20, kHugeFrom = 2 * kHugePage;

// TAPML_HUGE_PAGES=0 keeps ordinary pages (to measure what the huge ones buy).
bool huge_pages_wanted() {
  static const bool wanted = [] {
    const char* v = std::getenv("TAPML_HUGE_PAGES");
    return !(v && std::string_view(v) == "0");
  }();
  return wanted;
}

std::byte* allocate(size_t rounded) {
  if (rounded < kHugeFrom || !huge_pages_wanted())
    return static_cast<std::byte*>(std::aligned_alloc(kAlign, rounded));
  void* p = nullptr;
  if (posix_memalign(&p, kHugePage, rounded) != 0) return nullptr;
#ifdef MADV_HUGEPAGE
  // Advice: where it is refused (no THP, a kernel without it) the pages are ordinary ones.
  // p is 2 MiB aligned; the kernel rounds the length up to whole pages.
  ::madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return static_cast<std::byte*>(p);
}
}  // namespace

HostBackend::~HostBackend() {
  for (Block& b : blocks_) std::free(b.bytes);
  for (auto& [size, ptrs] : spare_)
    for (std::byte* p : ptrs) std::free(p);
}

void HostBackend::trim_spares(size_t more) {
  const size_t bound = std::max({kSpareFloor, peak_, live_ + more});
  for (auto it = spare_.begin(); it != spare_.end() && live_ + spare_bytes_ + more > bound;) {
    while (!it->second.empty() && live_ + spare_bytes_ + more > bound) {
      std::free(it->second.back());
      it->second.pop_back();
      spare_bytes_ -= it->first;
    }
    it = it->second.empty() ? spare_.erase(it) : std::next(it);
  }
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
    trim_spares(rounded);
    p = allocate(rounded);
  }
  TAPML_REQUIRE(p != nullptr,
                info_.name + ": out of host memory allocating " + std::to_string(bytes) + " bytes");
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    if (blocks_.size() >= 0xffffffffu) {
      std::free(p);
      throw Error(info_.name + ": too many buffers at once");
    }
    try {
      blocks_.emplace_back();
    } catch (...) {
      std::free(p);
      throw;
    }
    slot = uint32_t(blocks_.size() - 1);
  }
  Block& b = blocks_[slot];
  b.bytes = p;
  b.size = bytes;
  b.capacity = rounded;
  allocated_ += bytes;
  live_ += rounded;
  peak_ = std::max(peak_, live_);
  return (BufferId(b.generation) << 32) | (BufferId(slot) + 1);
}

void HostBackend::free(BufferId id) {
  const size_t slot = slot_of(id, "free");
  Block& b = blocks_[slot];
  allocated_ -= b.size;
  live_ -= b.capacity;
  bool kept = false;
  if (live_ + spare_bytes_ + b.capacity <= std::max(kSpareFloor, peak_)) {
    try {
      spare_[b.capacity].push_back(b.bytes);
      spare_bytes_ += b.capacity;
      kept = true;
    } catch (...) {
    }
  }
  if (!kept) std::free(b.bytes);
  b.bytes = nullptr;
  b.size = b.capacity = 0;
  // A slot whose generation would wrap is retired: its old ids must never match again.
  if (++b.generation == 0xffffffffu) return;
  try {
    free_slots_.push_back(uint32_t(slot));
  } catch (...) {
  }  // the slot stays unused
}

size_t HostBackend::slot_of(BufferId id, const char* what) const {
  const uint64_t slot = (id & 0xffffffffu) - 1;
  if (slot < blocks_.size()) {
    const Block& b = blocks_[slot];
    if (b.bytes && b.generation == uint32_t(id >> 32)) return size_t(slot);
  }
  throw Error(info_.name + ": " + what + " of unknown buffer " + std::to_string(id));
}

void HostBackend::write(BufferId id, size_t offset, const void* src, size_t bytes) {
  const Block& b = block(id, "write");
  TAPML_REQUIRE(offset <= b.size && bytes <= b.size - offset,
                info_.name + ": write past the end of buffer " + std::to_string(id));
  if (bytes) std::memcpy(b.bytes + offset, src, bytes);
}

void HostBackend::read(BufferId id, size_t offset, void* dst, size_t bytes) {
  const Block& b = block(id, "read");
  TAPML_REQUIRE(offset <= b.size && bytes <= b.size - offset,
                info_.name + ": read past the end of buffer " + std::to_string(id));
  if (bytes) std::memcpy(dst, b.bytes + offset, bytes);
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
  return block(t.buffer, "access").bytes + t.offset;
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

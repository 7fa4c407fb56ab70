// The last small host write of each buffer, kept until the device writes that buffer: a GPU
// backend checks small inputs the host has just written (token ids, cache positions) from
// this copy instead of waiting for its queued work and reading them back.
#pragma once
#include <cstddef>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"

namespace tapml {

class HostShadow {
 public:
  static constexpr size_t kMaxBytes = 4096;

  // The host wrote `bytes` at `offset` of buffer id (kept if small, else the old copy goes).
  void wrote(BufferId id, size_t offset, const void* src, size_t bytes) {
    if (bytes > kMaxBytes) return forget(id);
    const std::byte* p = static_cast<const std::byte*>(src);
    copies_[id] = {offset, std::vector<std::byte>(p, p + bytes)};
  }
  // The device wrote (or freed) buffer id.
  void forget(BufferId id) { copies_.erase(id); }
  // Copies [offset, offset + bytes) of buffer id into dst if the last small write holds all
  // of it; false otherwise.
  bool read(BufferId id, size_t offset, void* dst, size_t bytes) const {
    auto it = copies_.find(id);
    if (it == copies_.end() || offset < it->second.offset ||
        offset + bytes > it->second.offset + it->second.bytes.size())
      return false;
    std::memcpy(dst, it->second.bytes.data() + (offset - it->second.offset), bytes);
    return true;
  }

 private:
  struct Copy {
    size_t offset = 0;
    std::vector<std::byte> bytes;
  };
  std::unordered_map<BufferId, Copy> copies_;
};

}  // namespace tapml

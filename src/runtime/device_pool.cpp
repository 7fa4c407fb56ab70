#include "runtime/device_pool.h"

#include "backends/builtin.h"
#include "core/error.h"

namespace tapml {

DevicePool::~DevicePool() {
  // Weights first, while their devices still exist; a device that went away (a lost remote
  // connection) must not stop the rest from closing.
  for (auto& [uri, d] : devices_)
    for (auto& [key, r] : d.weights) {
      try {
        d.backend->free(r.buffer);
      } catch (...) {
      }
    }
}

Backend& DevicePool::open(const std::string& uri) {
  auto it = devices_.find(uri);
  if (it == devices_.end()) {
    Device d;
    d.backend = open_backend(uri);
    d.counters.opens = 1;
    it = devices_.emplace(uri, std::move(d)).first;
    order_.push_back(uri);
  }
  return *it->second.backend;
}

DevicePool::Device& DevicePool::device_of(const Backend& b) {
  for (auto& [uri, d] : devices_)
    if (d.backend.get() == &b) return d;
  throw Error("internal: device '" + b.info().uri + "' was not opened by this pool");
}

DeviceTensor DevicePool::weight(Backend& device, const Tensor& host, bool* uploaded) {
  Device& d = device_of(device);
  auto key = std::make_pair(host.bytes(), host.nbytes());
  auto it = d.weights.find(key);
  if (uploaded) *uploaded = it == d.weights.end();
  if (it == d.weights.end()) {
    BufferId id = device.alloc(host.nbytes());
    try {
      device.write(id, 0, host.bytes(), host.nbytes());
    } catch (...) {
      device.free(id);
      throw;
    }
    it = d.weights.emplace(key, Resident{host, id}).first;
    d.counters.weight_uploads++;
    d.counters.weight_bytes += int64_t(host.nbytes());
  }
  return DeviceTensor{it->second.buffer, 0, host.dtype(), host.shape()};
}

DeviceCounters DevicePool::counters(const std::string& uri) const {
  auto it = devices_.find(uri);
  return it == devices_.end() ? DeviceCounters{} : it->second.counters;
}

}  // namespace tapml

// The devices a process has open. A backend URI is opened once, on first use, and shared by
// every session, run, migration step and comparison that names it (opening a GPU device or a
// remote connection, and uploading a model, are the slow parts of bringing a model up). Model
// weights are uploaded to a device once: the pool keeps each device's copy, keyed by the host
// bytes it came from, until the pool goes away.
//
// One pool per process, made by main() and passed to whatever runs models; a component that
// is not given one makes its own. Not thread-safe: one thread drives a pool.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"

namespace tapml {

// What crossed into one device through the pool.
struct DeviceCounters {
  int64_t opens = 0;           // times the URI was opened (1 once used)
  int64_t weight_uploads = 0;  // weights copied to the device
  int64_t weight_bytes = 0;
};

class DevicePool {
 public:
  DevicePool() = default;
  ~DevicePool();
  DevicePool(const DevicePool&) = delete;
  DevicePool& operator=(const DevicePool&) = delete;

  // The device for `uri`, opened on first use (Error as open_backend gives it).
  Backend& open(const std::string& uri);
  // The device's copy of a weight, uploaded on first use. `host` must be the model's own
  // tensor (its bytes identify it), not a copy made for the call; `device` must come from
  // open(). `uploaded`, when given, says whether this call copied the bytes.
  DeviceTensor weight(Backend& device, const Tensor& host, bool* uploaded = nullptr);

  // Counters of a URI (all zero when it was never opened).
  DeviceCounters counters(const std::string& uri) const;
  // The URIs opened so far, in the order they were.
  std::vector<std::string> uris() const { return order_; }

 private:
  struct Resident {
    Tensor host;  // keeps the bytes (and so the key) alive
    BufferId buffer = 0;
  };
  struct Device {
    std::unique_ptr<Backend> backend;
    std::map<std::pair<const std::byte*, size_t>, Resident> weights;
    DeviceCounters counters;
  };
  Device& device_of(const Backend& b);

  std::map<std::string, Device> devices_;
  std::vector<std::string> order_;
};

}  // namespace tapml

// OpenCL platforms and devices: enumeration, what TapML needs to know of a device, and the
// per-device context and program cache that every backend on the device shares for the life
// of the process (programs are built once per device, source and options).
#pragma once
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/opencl/cl_api.h"

namespace tapml::opencl {

// Throws Error("opencl: WHAT failed (CL_...)") unless r is CL_SUCCESS.
void check(cl_int r, const std::string& what);

struct DeviceFacts {
  cl_platform_id platform = nullptr;
  cl_device_id device = nullptr;
  size_t platform_index = 0, device_index = 0;
  std::string platform_name, name, vendor, version, c_version, extensions;
  cl_device_type type = 0;
  cl_ulong global_memory = 0, max_alloc = 0, local_memory = 0;
  size_t max_work_group = 0;
  cl_uint compute_units = 0;
  bool fp16 = false, fp64 = false, subgroups = false, int64_atomics = false;

  bool gpu() const { return (type & CL_DEVICE_TYPE_GPU) != 0; }
  std::string uri() const;
  // Name, platform, type, versions, limits and the extensions of note, on one line.
  std::string describe() const;
};

// Every device of every platform, by platform then device, in the loader's order. Throws
// Error when the loader is missing or no platform is installed.
std::vector<std::vector<DeviceFacts>> enumerate_devices(const ClApi& cl);

// One device's context and its built programs; shared by every backend on the device.
class DeviceContext {
 public:
  static std::shared_ptr<DeviceContext> of(const ClApi& cl, const DeviceFacts& device);
  ~DeviceContext();
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;

  cl_context context() const { return context_; }
  // The program of kernels/FILE.cl (after common.cl) built with `options`, built on first use.
  // Throws Error with the compiler's log when the device rejects it.
  cl_program program(const std::string& file, const std::string& options);

 private:
  DeviceContext(const ClApi& cl, const DeviceFacts& device);
  const ClApi& cl_;
  DeviceFacts device_;
  cl_context context_ = nullptr;
  std::mutex mutex_;
  std::vector<std::pair<std::string, cl_program>> programs_;  // key: file + '\n' + options
};

}  // namespace tapml::opencl

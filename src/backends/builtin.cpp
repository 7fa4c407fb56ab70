#include "backends/builtin.h"

#include <mutex>

#include "backend/registry.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/faulty/faulty_backend.h"
#include "backends/ref/ref_backend.h"
#include "backends/remote/tcp_backend.h"
#include "backends/webgpu/webgpu_backend.h"
#ifdef TAPML_WITH_OPENCL
#include "backends/opencl/opencl_backend.h"
#endif
#ifdef TAPML_WITH_VULKAN
#include "backends/vulkan/vulkan_backend.h"
#endif

namespace tapml {

void register_builtin_backends() {
  static std::once_flag once;
  std::call_once(once, [] {
    register_backend("ref", "reference: plain loops, f64 accumulation (the source platform)",
                     make_ref_backend);
    register_backend("cpu", "host CPU: multi-threaded, SIMD; cpu?threads=N", make_cpu_backend);
    register_backend("faulty",
                     "fault injection: faulty:INNER?fault=NAME&site=REGEX wraps INNER with one "
                     "realistic kernel bug",
                     make_faulty_backend);
    register_backend("tcp", "remote device: tcp://HOST:PORT[?token=T] (a `tapml serve` server)",
                     make_tcp_backend);
    register_backend("webgpu",
                     "WebGPU in a browser tab or Node: webgpu://HOST:PORT[/NAME]?token=T (a "
                     "`tapml serve-web` relay), webgpu:chromium or webgpu:node (started here)",
                     make_webgpu_backend);
#ifdef TAPML_WITH_VULKAN
    register_backend("vulkan",
                     "Vulkan 1.1 compute: vulkan (device 0), vulkan:N or vulkan:NAME "
                     "(tapml info --backends lists the devices)",
                     make_vulkan_backend, vulkan_devices);
#endif
#ifdef TAPML_WITH_OPENCL
    register_backend("opencl",
                     "OpenCL 1.2+ (GPUs; CPUs through PoCL): opencl (the first GPU, else the "
                     "first device), opencl:P or opencl:P:D (tapml info --backends lists them)",
                     make_opencl_backend, opencl_devices);
#endif
  });
}

std::unique_ptr<Backend> open_backend(const std::string& uri) {
  register_builtin_backends();
  return make_backend(uri);
}

}  // namespace tapml

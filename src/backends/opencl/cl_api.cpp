#include "backends/opencl/cl_api.h"

#include <dlfcn.h>

namespace tapml::opencl {

const ClApi* cl_api(std::string* why) {
  static std::string reason;
  static const ClApi* api = []() -> const ClApi* {
    // The handle stays open for the life of the process: drivers keep threads and atexit
    // handlers that must outlive every backend.
    void* lib = dlopen("libOpenCL.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) lib = dlopen("libOpenCL.so", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      reason =
          "no OpenCL loader (libOpenCL.so.1); install ocl-icd-libopencl1 and a driver "
          "(pocl-opencl-icd for the CPU)";
      return nullptr;
    }
    static ClApi loaded;
#define TAPML_CL_LOAD(name)                                                 \
  loaded.name = reinterpret_cast<decltype(loaded.name)>(dlsym(lib, #name)); \
  if (!loaded.name) {                                                       \
    reason = "the OpenCL loader (libOpenCL.so.1) lacks " #name;             \
    return nullptr;                                                         \
  }
    TAPML_CL_FUNCTIONS(TAPML_CL_LOAD)
#undef TAPML_CL_LOAD
    return &loaded;
  }();
  if (why) *why = reason;
  return api;
}

std::string cl_error_name(cl_int code) {
  const char* name = "unknown error";
  switch (code) {
#define TAPML_CL_CODE(c) \
  case c:                \
    name = #c;           \
    break;
    TAPML_CL_CODE(CL_DEVICE_NOT_FOUND)
    TAPML_CL_CODE(CL_DEVICE_NOT_AVAILABLE)
    TAPML_CL_CODE(CL_COMPILER_NOT_AVAILABLE)
    TAPML_CL_CODE(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    TAPML_CL_CODE(CL_OUT_OF_RESOURCES)
    TAPML_CL_CODE(CL_OUT_OF_HOST_MEMORY)
    TAPML_CL_CODE(CL_BUILD_PROGRAM_FAILURE)
    TAPML_CL_CODE(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    TAPML_CL_CODE(CL_INVALID_VALUE)
    TAPML_CL_CODE(CL_INVALID_DEVICE)
    TAPML_CL_CODE(CL_INVALID_CONTEXT)
    TAPML_CL_CODE(CL_INVALID_COMMAND_QUEUE)
    TAPML_CL_CODE(CL_INVALID_MEM_OBJECT)
    TAPML_CL_CODE(CL_INVALID_BUILD_OPTIONS)
    TAPML_CL_CODE(CL_INVALID_PROGRAM)
    TAPML_CL_CODE(CL_INVALID_PROGRAM_EXECUTABLE)
    TAPML_CL_CODE(CL_INVALID_KERNEL_NAME)
    TAPML_CL_CODE(CL_INVALID_KERNEL)
    TAPML_CL_CODE(CL_INVALID_ARG_INDEX)
    TAPML_CL_CODE(CL_INVALID_ARG_VALUE)
    TAPML_CL_CODE(CL_INVALID_ARG_SIZE)
    TAPML_CL_CODE(CL_INVALID_KERNEL_ARGS)
    TAPML_CL_CODE(CL_INVALID_WORK_DIMENSION)
    TAPML_CL_CODE(CL_INVALID_WORK_GROUP_SIZE)
    TAPML_CL_CODE(CL_INVALID_WORK_ITEM_SIZE)
    TAPML_CL_CODE(CL_INVALID_GLOBAL_OFFSET)
    TAPML_CL_CODE(CL_INVALID_EVENT_WAIT_LIST)
    TAPML_CL_CODE(CL_INVALID_OPERATION)
    TAPML_CL_CODE(CL_INVALID_BUFFER_SIZE)
    TAPML_CL_CODE(CL_INVALID_GLOBAL_WORK_SIZE)
    TAPML_CL_CODE(CL_INVALID_PLATFORM)
#undef TAPML_CL_CODE
    case -1001:  // CL_PLATFORM_NOT_FOUND_KHR, from the ICD loader
      name = "CL_PLATFORM_NOT_FOUND_KHR";
      break;
    default:
      break;
  }
  return std::string(name) + " (" + std::to_string(code) + ")";
}

}  // namespace tapml::opencl

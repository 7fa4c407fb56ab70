// The opencl backend: the catalog's ops as OpenCL C kernels (kernels/*.cl, embedded at build
// time and built at run time for the chosen device, cached per device for the process), on
// any OpenCL 1.2+ device: GPUs, and CPUs through PoCL. f32 activations; f32, f16 and bf16
// weights, f16 read with vload_half so no cl_khr_fp16 is needed. libOpenCL.so.1 is loaded
// at run time: a build with the Khronos headers runs where no OpenCL is installed, and the
// backend then says so when opened.
//
// URI: opencl (the first GPU of any platform, else the first device), opencl:P (platform P:
// its first GPU, else its first device), opencl:P:D (device D of platform P). Calls run in
// order on one in-order queue; read() and sync() wait for them. Limits of the device (max
// allocation, work-group size, local memory) are checked in supports(), which also builds
// the call's kernels: a kernel the device's compiler rejects is refused with its build log.
#pragma once
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "backend/registry.h"

namespace tapml {

std::unique_ptr<Backend> make_opencl_backend(const BackendUri& uri);

// Every OpenCL device of every platform ("opencl:0:0": NAME, platform, limits, extensions of
// note), or one listing without a URI saying why there are none. Never throws.
std::vector<DeviceListing> opencl_devices();

}  // namespace tapml

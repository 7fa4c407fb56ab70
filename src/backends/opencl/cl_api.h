// The OpenCL entry points TapML uses, loaded from libOpenCL.so.1 (the ICD loader) at run time,
// so that a build with the Khronos headers runs, without the backend, where no OpenCL is
// installed. Types and signatures come from the headers; no symbol is linked.
#pragma once
#define CL_TARGET_OPENCL_VERSION 300
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>

#include <string>

namespace tapml::opencl {

struct ClApi {
#define TAPML_CL_FUNCTIONS(X)  \
  X(clGetPlatformIDs)          \
  X(clGetPlatformInfo)         \
  X(clGetDeviceIDs)            \
  X(clGetDeviceInfo)           \
  X(clCreateContext)           \
  X(clReleaseContext)          \
  X(clCreateCommandQueue)      \
  X(clReleaseCommandQueue)     \
  X(clCreateBuffer)            \
  X(clReleaseMemObject)        \
  X(clEnqueueWriteBuffer)      \
  X(clEnqueueReadBuffer)       \
  X(clCreateProgramWithSource) \
  X(clBuildProgram)            \
  X(clGetProgramBuildInfo)     \
  X(clReleaseProgram)          \
  X(clCreateKernel)            \
  X(clReleaseKernel)           \
  X(clSetKernelArg)            \
  X(clGetKernelWorkGroupInfo)  \
  X(clEnqueueNDRangeKernel)    \
  X(clFlush)                   \
  X(clFinish)                  \
  X(clGetEventProfilingInfo)   \
  X(clReleaseEvent)            \
  X(clEnqueueMapBuffer)        \
  X(clEnqueueUnmapMemObject)
#define TAPML_CL_POINTER(name) decltype(&::name) name = nullptr;
  TAPML_CL_FUNCTIONS(TAPML_CL_POINTER)
#undef TAPML_CL_POINTER
};

// The loaded entry points, or nullptr with the reason in *why ("no OpenCL loader
// (libOpenCL.so.1)", or the first missing symbol). Loaded once per process; never throws.
const ClApi* cl_api(std::string* why = nullptr);

// "CL_OUT_OF_RESOURCES (-5)".
std::string cl_error_name(cl_int code);

}  // namespace tapml::opencl

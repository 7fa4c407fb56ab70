// What only the opencl backend has: its device limits refused by supports() (for float and
// quantized weights alike), and device selection and listing. The ops, quantized kernels, whole
// models and families are checked on opencl and vulkan alike by the gpu_*_test.cpp suites.
// Every test skips, saying why, where the build has no OpenCL or the machine no OpenCL device.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "backends/builtin.h"
#include "core/error.h"
#include "support/gpu_backends.h"
#ifdef TAPML_WITH_OPENCL
#include "backends/opencl/opencl_backend.h"
#endif

namespace tapml {
namespace {

#ifndef TAPML_WITH_OPENCL

TEST(OpenCl, Skipped) { GTEST_SKIP() << "built without OpenCL (TAPML_WITH_OPENCL is off)"; }

#else

Backend& device() { return *testing::gpu_backend("opencl"); }

TEST(OpenCl, RefusesCallsPastTheDeviceLimits) {
  REQUIRE_GPU_BACKEND("opencl");
  // A weight larger than any allocation the device allows (2^50 bytes of f32): supports()
  // looks at the shapes only, so nothing is allocated.
  const int64_t N = int64_t(1) << 36, K = 1 << 12;
  OpCall big{Op::Matmul,
             {},
             {{1, 0, DType::F32, {1, K}}, {2, 0, DType::F32, {N, K}}},
             {{3, 0, DType::F32, {1, N}}},
             "test"};
  Support s = device().supports(big);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("CL_DEVICE_MAX_MEM_ALLOC_SIZE"), std::string::npos) << s.reason;
  EXPECT_THROW(device().alloc(size_t(1) << 50), Error);
  // Attention scores past the allocation limit: T * H * P floats.
  OpCall scores{Op::Attention,
                {{"n_heads", 1024.0}, {"n_kv_heads", 1.0}, {"head_dim", 1.0}, {"scale", 1.0}},
                {{1, 0, DType::F32, {1 << 16, 1024}},
                 {2, 0, DType::F32, {1 << 16, 1}},
                 {3, 0, DType::F32, {1 << 16, 1}}},
                {{4, 0, DType::F32, {1 << 16, 1024}}},
                "test"};
  s = device().supports(scores);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("scores need"), std::string::npos) << s.reason;
  // A quantized weight past the limit, measured in its blocks' bytes (2^50 of Q4_0).
  OpCall quant{Op::Matmul,
               {},
               {{1, 0, DType::F32, {1, K}}, {2, 0, DType::Q4_0, {N * 4, K}}},
               {{3, 0, DType::F32, {1, N * 4}}},
               "test"};
  s = device().supports(quant);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("CL_DEVICE_MAX_MEM_ALLOC_SIZE"), std::string::npos) << s.reason;
}

TEST(OpenCl, DeviceSelectionAndListing) {
  REQUIRE_GPU_BACKEND("opencl");
  std::vector<DeviceListing> devices = opencl_devices();
  ASSERT_FALSE(devices.empty());
  EXPECT_EQ(devices[0].uri, "opencl:0:0");
  for (const char* field : {"global memory", "max allocation", "work-group size", "local memory",
                            "cl_khr_fp16", "cl_khr_subgroups", "cl_khr_int64_base_atomics"})
    EXPECT_NE(devices[0].description.find(field), std::string::npos) << devices[0].description;
  EXPECT_EQ(device().info().name, "opencl");
  EXPECT_GT(device().info().max_buffer_bytes, 0u);
  EXPECT_NO_THROW(make_opencl_backend(BackendUri::parse("opencl:0")));
  EXPECT_NO_THROW(make_opencl_backend(BackendUri::parse("opencl:0:0")));
  EXPECT_THROW(make_opencl_backend(BackendUri::parse("opencl:99")), Error);
  EXPECT_THROW(make_opencl_backend(BackendUri::parse("opencl:0:99")), Error);
  EXPECT_THROW(make_opencl_backend(BackendUri::parse("opencl:gpu")), Error);
  EXPECT_THROW(make_opencl_backend(BackendUri::parse("opencl?x=1")), Error);
  register_builtin_backends();
  EXPECT_NO_THROW(open_backend("opencl"));
  bool listed = false;
  for (const BackendKind& k : registered_backends())
    if (k.scheme == "opencl") listed = k.devices && !k.devices().empty();
  EXPECT_TRUE(listed);
}

#endif

}  // namespace
}  // namespace tapml

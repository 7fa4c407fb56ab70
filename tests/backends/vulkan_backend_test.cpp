// What only the vulkan backend has: its device limits refused by supports(), and device
// selection and listing. The ops, quantized kernels, whole models and families are checked on
// vulkan and opencl alike by the gpu_*_test.cpp suites. Every test skips, saying why, where
// the build has no Vulkan or the machine no Vulkan device (install mesa-vulkan-drivers for
// lavapipe).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "backend/registry.h"
#include "backends/builtin.h"
#include "core/error.h"
#include "support/gpu_backends.h"
#ifdef TAPML_WITH_VULKAN
#include "backends/vulkan/vulkan_backend.h"
#endif

namespace tapml {
namespace {

#ifndef TAPML_WITH_VULKAN

TEST(Vulkan, Skipped) { GTEST_SKIP() << "built without Vulkan (TAPML_WITH_VULKAN is off)"; }

#else

Backend& device() { return *testing::gpu_backend("vulkan"); }

TEST(Vulkan, RefusesCallsPastTheDeviceLimits) {
  REQUIRE_GPU_BACKEND("vulkan");
  // A weight larger than any storage buffer window (4 GiB of f32): supports() looks at the
  // shapes only, so nothing is allocated.
  const int64_t N = 1 << 20, K = 1 << 10;
  OpCall big{Op::Matmul,
             {},
             {{1, 0, DType::F32, {1, K}}, {2, 0, DType::F32, {N, K}}},
             {{3, 0, DType::F32, {1, N}}},
             "test"};
  Support s = device().supports(big);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("maxStorageBufferRange"), std::string::npos) << s.reason;
}

TEST(Vulkan, DeviceSelectionAndInfo) {
  REQUIRE_GPU_BACKEND("vulkan");
  std::vector<DeviceListing> devices = vulkan_devices();
  ASSERT_FALSE(devices.empty());
  EXPECT_EQ(devices[0].uri, "vulkan:0");
  EXPECT_NE(devices[0].description.find("storage buffer range"), std::string::npos)
      << devices[0].description;
  EXPECT_EQ(device().info().name, "vulkan");
  EXPECT_NO_THROW(make_vulkan_backend(BackendUri::parse("vulkan:0")));
  EXPECT_THROW(make_vulkan_backend(BackendUri::parse("vulkan:99")), Error);
  EXPECT_THROW(make_vulkan_backend(BackendUri::parse("vulkan:no-such-device-name")), Error);
  register_builtin_backends();
  EXPECT_NO_THROW(open_backend("vulkan"));
}

#endif

}  // namespace
}  // namespace tapml

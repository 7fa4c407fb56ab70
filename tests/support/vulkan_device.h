// The Vulkan device the vulkan tests share, opened once per test binary.
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"

namespace tapml::testing {

// The device, or null with the reason in *why (no Vulkan in the build, no device).
std::unique_ptr<Backend>& vulkan_device(std::string* why = nullptr);

}  // namespace tapml::testing

// Skips the test, saying why, when there is no Vulkan device.
#define REQUIRE_VULKAN_DEVICE()                                                                \
  do {                                                                                         \
    std::string why_;                                                                          \
    if (!::tapml::testing::vulkan_device(&why_)) GTEST_SKIP() << "no Vulkan device: " << why_; \
  } while (0)

// The GPU backends that the shared backend suites run on: vulkan and opencl, each on its
// default device, opened once per test binary through the registry (so a build without one
// of them still compiles every suite), and the gtest parameter names for them.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace tapml::testing {

// The URIs the suites are instantiated with: "vulkan", "opencl".
const std::vector<std::string>& gpu_backend_uris();

// The backend `uri` names, shared by every test, or null with the reason in *why (not in
// this build, no device).
std::unique_ptr<Backend>& gpu_backend(const std::string& uri, std::string* why = nullptr);

}  // namespace tapml::testing

// Skips the test, saying why, when the backend `uri` cannot be opened here.
#define REQUIRE_GPU_BACKEND(uri)                               \
  do {                                                         \
    std::string why_;                                          \
    if (!::tapml::testing::gpu_backend(uri, &why_))            \
      GTEST_SKIP() << "cannot open " << (uri) << ": " << why_; \
  } while (0)

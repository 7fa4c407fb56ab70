#include "support/vulkan_device.h"

#ifdef TAPML_WITH_VULKAN
#include "backends/vulkan/vulkan_backend.h"
#endif

namespace tapml::testing {

std::unique_ptr<Backend>& vulkan_device(std::string* why) {
  static std::string reason;
  static std::unique_ptr<Backend> be = []() -> std::unique_ptr<Backend> {
#ifdef TAPML_WITH_VULKAN
    try {
      return make_vulkan_backend(BackendUri::parse("vulkan"));
    } catch (const std::exception& e) {
      reason = e.what();
      return nullptr;
    }
#else
    reason = "built without Vulkan (TAPML_WITH_VULKAN is off)";
    return nullptr;
#endif
  }();
  if (why) *why = reason;
  return be;
}

}  // namespace tapml::testing

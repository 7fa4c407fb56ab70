#include "support/gpu_backends.h"

#include <map>

#include "backend/registry.h"
#include "backends/builtin.h"

namespace tapml::testing {

const std::vector<std::string>& gpu_backend_uris() {
  static const std::vector<std::string> uris = {"vulkan", "opencl"};
  return uris;
}

std::unique_ptr<Backend>& gpu_backend(const std::string& uri, std::string* why) {
  struct Opened {
    std::unique_ptr<Backend> backend;
    std::string reason;
  };
  static std::map<std::string, Opened> opened;
  auto it = opened.find(uri);
  if (it == opened.end()) {
    register_builtin_backends();
    Opened o;
    const std::string scheme = BackendUri::parse(uri).scheme;
    bool built = false;
    for (const BackendKind& k : registered_backends()) built = built || k.scheme == scheme;
    if (!built) {
      o.reason = "this build has no " + scheme + " backend (its headers were not found)";
    } else {
      try {
        o.backend = make_backend(uri);
      } catch (const std::exception& e) {
        o.reason = e.what();
      }
    }
    it = opened.emplace(uri, std::move(o)).first;
  }
  if (why) *why = it->second.reason;
  return it->second.backend;
}

}  // namespace tapml::testing

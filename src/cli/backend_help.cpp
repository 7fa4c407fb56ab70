#include "backend/registry.h"
#include "backends/builtin.h"
#include "cli/commands.h"

namespace tapml::cli {

std::string backend_help(const std::string& what) {
  register_builtin_backends();
  std::string kinds;
  for (const BackendKind& k : registered_backends())
    kinds += (kinds.empty() ? "" : ", ") + k.scheme;
  return what + ": " + kinds +
         " (ref?acc=f32, cpu?threads=N, vulkan:N, tcp://HOST:PORT, faulty:INNER?fault=NAME; "
         "tapml info --backends describes each)";
}

}  // namespace tapml::cli

// The fast host backend: multi-threaded, vectorized with Highway, f32/f16/bf16 weights.
// URI: cpu[?threads=N] (default: all hardware threads).
#pragma once
#include <memory>

#include "backend/backend.h"
#include "backend/registry.h"

namespace tapml {

std::unique_ptr<Backend> make_cpu_backend(const BackendUri& uri);

}  // namespace tapml

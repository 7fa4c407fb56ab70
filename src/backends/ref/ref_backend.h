// The reference backend: the source platform every other backend is judged against.
// Plain loops that read like the op catalog, f32 storage, every reduction in f64.
#pragma once
#include <memory>

#include "backend/backend.h"
#include "backend/registry.h"

namespace tapml {

std::unique_ptr<Backend> make_ref_backend(const BackendUri& uri);

}  // namespace tapml

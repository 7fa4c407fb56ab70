// Opens a backend by URI with every backend compiled into this build registered.
#pragma once
#include <memory>
#include <string>

#include "backend/backend.h"

namespace tapml {

std::unique_ptr<Backend> open_backend(const std::string& uri);
// Registers the built-in backends (idempotent); open_backend calls it.
void register_builtin_backends();

}  // namespace tapml

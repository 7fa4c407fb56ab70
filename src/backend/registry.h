// Builds backends from URIs: "ref", "cpu?threads=4", "vulkan:0", "tcp://host:port?token=T",
// "faulty:cpu?fault=rope_pairing". The scheme picks the factory; the rest is the factory's.
// The registry is TapML's only global state.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace tapml {

struct BackendUri {
  std::string text;                           // the whole URI
  std::string scheme;                         // "cpu"
  std::string target;                         // what follows "scheme:" (or "scheme://") up to '?'
  std::map<std::string, std::string> params;  // query parameters

  // Throws Error for a URI without a scheme, a parameter that is not KEY=VALUE, or one given
  // twice (naming it).
  static BackendUri parse(const std::string& uri);
  // Parameter as integer/string with a default; throws Error for a malformed integer.
  int64_t int_param(const std::string& key, int64_t fallback) const;
  // The same, and throws Error naming the parameter if a given value lies outside [lo, hi].
  int64_t int_param(const std::string& key, int64_t fallback, int64_t lo, int64_t hi) const;
  std::string param(const std::string& key, const std::string& fallback) const;
  // Throws Error naming any parameter not in `known`.
  void allow_params(const std::vector<std::string>& known) const;
};

using BackendFactory = std::function<std::unique_ptr<Backend>(const BackendUri&)>;

// One device a backend kind can open: the URI that opens it and what it is.
struct DeviceListing {
  std::string uri;          // "vulkan:0"
  std::string description;  // name, type and limits
};
// Lists a kind's devices, or says why there are none (a listing without a URI). Never throws.
using DeviceEnumerator = std::function<std::vector<DeviceListing>()>;

struct BackendKind {
  std::string scheme, description;
  DeviceEnumerator devices;  // empty: the kind has no devices to list (ref, cpu, wrappers)
};

void register_backend(const std::string& scheme, const std::string& description,
                      BackendFactory factory, DeviceEnumerator devices = {});
// Every registered kind, by scheme.
std::vector<BackendKind> registered_backends();
// Creates the backend; throws Error for an unknown scheme (listing the known ones).
std::unique_ptr<Backend> make_backend(const std::string& uri);

}  // namespace tapml

#include "backend/registry.h"

#include <charconv>
#include <mutex>

#include "core/error.h"

namespace tapml {

namespace {
struct Entry {
  std::string description;
  BackendFactory factory;
  DeviceEnumerator devices;
};
std::map<std::string, Entry>& table() {
  static std::map<std::string, Entry> t;
  return t;
}
std::mutex& table_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

BackendUri BackendUri::parse(const std::string& uri) {
  TAPML_REQUIRE_USAGE(!uri.empty(), "empty backend URI");
  BackendUri u;
  u.text = uri;
  std::string head = uri, query;
  // The query belongs to the outermost backend; a nested URI (faulty:cpu?...) keeps none.
  if (auto q = uri.find('?'); q != std::string::npos) {
    head = uri.substr(0, q);
    query = uri.substr(q + 1);
  }
  auto colon = head.find(':');
  u.scheme = head.substr(0, colon);
  if (colon != std::string::npos) {
    u.target = head.substr(colon + 1);
    if (u.target.rfind("//", 0) == 0) u.target = u.target.substr(2);
  }
  TAPML_REQUIRE_USAGE(!u.scheme.empty(), "backend URI '" + uri + "' has no scheme");
  size_t start = 0;
  while (start < query.size()) {
    size_t amp = query.find('&', start);
    std::string kv =
        query.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
    start = amp == std::string::npos ? query.size() : amp + 1;
    if (kv.empty()) continue;
    auto eq = kv.find('=');
    TAPML_REQUIRE_USAGE(eq != std::string::npos && eq > 0,
                        "backend URI '" + uri + "': parameter '" + kv + "' is not KEY=VALUE");
    // A second value would silently win (or lose); the user meant one of them, not both.
    std::string key = kv.substr(0, eq);
    TAPML_REQUIRE_USAGE(!u.params.count(key),
                        "backend URI '" + uri + "': parameter '" + key + "' given twice");
    u.params[key] = kv.substr(eq + 1);
  }
  return u;
}

int64_t BackendUri::int_param(const std::string& key, int64_t fallback) const {
  auto it = params.find(key);
  if (it == params.end()) return fallback;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  TAPML_REQUIRE_USAGE(
      ec == std::errc() && p == it->second.data() + it->second.size(),
      "backend URI '" + text + "': " + key + "=" + it->second + " is not an integer");
  return v;
}

int64_t BackendUri::int_param(const std::string& key, int64_t fallback, int64_t lo,
                              int64_t hi) const {
  int64_t v = int_param(key, fallback);
  TAPML_REQUIRE(!params.count(key) || (v >= lo && v <= hi),
                "backend URI '" + text + "': " + key + "=" + params.at(key) + " is out of range (" +
                    std::to_string(lo) + ".." + std::to_string(hi) + ")");
  return v;
}

std::string BackendUri::param(const std::string& key, const std::string& fallback) const {
  auto it = params.find(key);
  return it == params.end() ? fallback : it->second;
}

void BackendUri::allow_params(const std::vector<std::string>& known) const {
  for (auto& [k, v] : params) {
    bool ok = false;
    for (auto& n : known) ok = ok || n == k;
    if (!ok) {
      std::string list;
      for (auto& n : known) list += (list.empty() ? "" : ", ") + n;
      throw UsageError("backend URI '" + text + "': unknown parameter '" + k + "'" +
                       (list.empty() ? " (this backend takes none)" : " (known: " + list + ")"));
    }
  }
}

void register_backend(const std::string& scheme, const std::string& description,
                      BackendFactory factory, DeviceEnumerator devices) {
  std::lock_guard lock(table_mutex());
  table()[scheme] = Entry{description, std::move(factory), std::move(devices)};
}

std::vector<BackendKind> registered_backends() {
  std::lock_guard lock(table_mutex());
  std::vector<BackendKind> out;
  for (auto& [k, e] : table()) out.push_back({k, e.description, e.devices});
  return out;
}

std::unique_ptr<Backend> make_backend(const std::string& uri) {
  BackendUri u = BackendUri::parse(uri);
  BackendFactory factory;
  {
    std::lock_guard lock(table_mutex());
    auto it = table().find(u.scheme);
    if (it == table().end()) {
      std::string known;
      for (auto& [k, e] : table()) known += (known.empty() ? "" : ", ") + k;
      throw UsageError("unknown backend '" + u.scheme + "' in '" + uri + "' (available: " + known +
                       ")");
    }
    factory = it->second.factory;
  }
  return factory(u);
}

}  // namespace tapml

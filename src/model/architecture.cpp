#include "model/architecture.h"

#include "core/error.h"
#include "model/llama.h"

namespace tapml {

namespace {
// Every family TapML runs.
const std::vector<const Architecture*>& families() {
  static const std::vector<const Architecture*> list = {&llama_architecture()};
  return list;
}
}  // namespace

const Architecture& architecture(std::string_view name) {
  for (const Architecture* a : families())
    if (a->name() == name) return *a;
  std::string known;
  for (const Architecture* a : families())
    known += (known.empty() ? "" : ", ") + std::string(a->name());
  throw Error("architecture '" + std::string(name) + "' is not supported (supported: " + known +
              ")");
}

std::vector<std::string_view> architecture_names() {
  std::vector<std::string_view> out;
  for (const Architecture* a : families()) out.push_back(a->name());
  return out;
}

int gguf_hyperparameter(const gguf::File& f, const std::string& key,
                        std::optional<uint64_t> fallback, uint64_t max) {
  if (!f.has(key) && !fallback) throw Error(f.path() + ": metadata '" + key + "' is missing");
  uint64_t x = f.has(key) ? f.get_uint(key) : *fallback;
  if (x == 0 || x > max)
    throw Error(f.path() + ": " + key + " = " + std::to_string(x) + " is out of range (1 to " +
                std::to_string(max) + ")");
  return int(x);
}

}  // namespace tapml

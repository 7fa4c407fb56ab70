#include "core/memory.h"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tapml {

uint64_t physical_memory_bytes() {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? uint64_t(pages) * uint64_t(size) : 0;
}

namespace {
// TAPML_MEMORY_BUDGET as a positive number of bytes, or 0.
uint64_t budget_from_environment() {
  const char* env = std::getenv("TAPML_MEMORY_BUDGET");
  if (!env || !*env) return 0;
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(env, env + std::strlen(env), v);
  return ec == std::errc() && *end == '\0' ? v : 0;
}
}  // namespace

uint64_t memory_budget_bytes() {
  if (uint64_t v = budget_from_environment()) return v;
  uint64_t ram = physical_memory_bytes();
  return ram ? ram / 2 : uint64_t(4) << 30;
}

std::string memory_budget_source() {
  if (budget_from_environment()) return "TAPML_MEMORY_BUDGET";
  uint64_t ram = physical_memory_bytes();
  return (ram ? "half of this machine's " + bytes_text(ram) : std::string("4 GiB, memory unknown")) +
         "; set TAPML_MEMORY_BUDGET=BYTES to change it";
}

std::string bytes_text(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%llu B", (unsigned long long)bytes);
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

}  // namespace tapml

// How much memory TapML lets one run take for what grows with the user's choices (a KV cache
// sized by --steps): half of this machine's physical memory, or TAPML_MEMORY_BUDGET bytes
// when that is set.
#pragma once
#include <cstdint>
#include <string>

namespace tapml {

uint64_t physical_memory_bytes();  // 0 when unknown
uint64_t memory_budget_bytes();
// Where the budget comes from, for messages: "half of this machine's 23.47 GiB; set
// TAPML_MEMORY_BUDGET=BYTES to change it" or "TAPML_MEMORY_BUDGET".
std::string memory_budget_source();
std::string bytes_text(uint64_t bytes);  // "1.25 GiB", "512 KiB", "300 B" (binary units)

}  // namespace tapml

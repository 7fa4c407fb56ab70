// Content hashes for deduplicating tensor bytes and identifying model files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tapml {

// 128-bit XXH3 of the bytes, as 32 lowercase hex digits.
std::string content_hash(const void* data, size_t size);
// The same over a whole file, read in chunks; over a folder, its regular files' names and
// bytes in name order. Throws Error if unreadable.
std::string file_hash(const std::string& path);

}  // namespace tapml

// Whole small files (tokenizer files, text, test vectors) into memory.
#pragma once
#include <string>

namespace tapml {

// The bytes of the file at `path`. Throws Error naming the path and the reason when it cannot
// be opened or read.
std::string read_file_bytes(const std::string& path);

}  // namespace tapml

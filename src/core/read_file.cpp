#include "core/read_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace tapml {

std::string read_file_bytes(const std::string& path) {
  std::error_code ec;
  TAPML_REQUIRE(!std::filesystem::is_directory(path, ec), path + " is a folder, not a file");
  std::ifstream in(path, std::ios::binary);
  TAPML_REQUIRE(bool(in), path + ": cannot open (" + std::strerror(errno) + ")");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TAPML_REQUIRE(!in.bad(), path + ": read error");
  return s;
}

}  // namespace tapml

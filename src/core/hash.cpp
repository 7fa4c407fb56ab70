#include "core/hash.h"

#include <xxhash.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <vector>

#include "core/error.h"

namespace tapml {

namespace {
std::string hex(XXH128_hash_t h) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", (unsigned long long)h.high64,
                (unsigned long long)h.low64);
  return buf;
}
}  // namespace

std::string content_hash(const void* data, size_t size) { return hex(XXH3_128bits(data, size)); }

namespace {
void hash_into(XXH3_state_t* st, const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  TAPML_REQUIRE(f != nullptr, path + ": cannot open for hashing");
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0)
    XXH3_128bits_update(st, buf.data(), n);
  TAPML_REQUIRE(!std::ferror(f.get()), path + ": read error while hashing");
}
}  // namespace

std::string file_hash(const std::string& path) {
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> st(XXH3_createState(),
                                                                     &XXH3_freeState);
  XXH3_128bits_reset(st.get());
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    // A folder (a Hugging Face model): its regular files by name, each name then its bytes.
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(path, ec))
      if (e.is_regular_file()) names.push_back(e.path().filename().string());
    TAPML_REQUIRE(!ec, path + ": cannot list the folder for hashing: " + ec.message());
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) {
      XXH3_128bits_update(st.get(), n.c_str(), n.size() + 1);
      hash_into(st.get(), path + "/" + n);
    }
  } else {
    hash_into(st.get(), path);
  }
  return hex(XXH3_128bits_digest(st.get()));
}

}  // namespace tapml

// The files of the WebGPU device page (web/ in the source tree), embedded at build time by
// cmake/embed_web.cmake, and the rules for which of them the relay serves: every file
// directly in web/ and in web/kernels/ with extension .html, .js, .mjs, .css or .wgsl.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tapml::rpc {

struct WebFile {
  std::string_view path;          // relative to web/: "index.html", "kernels/add.wgsl"
  std::string_view content_type;  // "text/html; charset=utf-8"
  std::span<const uint8_t> bytes;
};

// The files embedded in this build (empty when the source tree had no web/ files).
std::span<const WebFile> embedded_web_files();

// The content type of a path the relay serves, or "" when it does not serve that path
// (another extension, a deeper folder, "..", a hidden file).
std::string web_content_type(std::string_view path);

// A served file's bytes, from `dir` when it is not empty (files read at each request, so a
// page being worked on is served as saved), else from the embedded table.
std::optional<std::vector<uint8_t>> find_web_file(const std::string& dir, std::string_view path);

}  // namespace tapml::rpc

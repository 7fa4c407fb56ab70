#include "rpc/web_files.h"

#include <fstream>
#include <iterator>

namespace tapml::rpc {

std::string web_content_type(std::string_view path) {
  if (path.empty() || path.find("..") != std::string_view::npos || path.front() == '/') return "";
  std::string_view name = path;
  if (path.rfind("kernels/", 0) == 0) name = path.substr(8);
  if (name.empty() || name.find('/') != std::string_view::npos || name.front() == '.') return "";
  size_t dot = name.rfind('.');
  std::string_view ext = dot == std::string_view::npos ? "" : name.substr(dot);
  if (ext == ".html") return "text/html; charset=utf-8";
  if (ext == ".js" || ext == ".mjs") return "text/javascript; charset=utf-8";
  if (ext == ".css") return "text/css; charset=utf-8";
  if (ext == ".wgsl") return "text/wgsl; charset=utf-8";
  return "";
}

std::optional<std::vector<uint8_t>> find_web_file(const std::string& dir, std::string_view path) {
  if (web_content_type(path).empty()) return std::nullopt;
  if (!dir.empty()) {
    std::ifstream in(dir + "/" + std::string(path), std::ios::binary);
    if (!in) return std::nullopt;
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
  }
  for (const WebFile& f : embedded_web_files())
    if (f.path == path) return std::vector<uint8_t>(f.bytes.begin(), f.bytes.end());
  return std::nullopt;
}

}  // namespace tapml::rpc

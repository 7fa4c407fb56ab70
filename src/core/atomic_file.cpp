#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace tapml {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), temp_(path_ + ".tmp.XXXXXX") {
  fd_ = ::mkstemp(temp_.data());
  if (fd_ < 0)
    throw Error(path_ + ": cannot create a temporary file beside it: " + std::strerror(errno));
  // mkstemp makes the file private; what TapML writes is ordinary data.
  ::fchmod(fd_, 0644);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_.c_str());
}

void AtomicFile::write(const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t n = ::write(fd_, p, std::min<size_t>(bytes, size_t(1) << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw Error(path_ + ": write failed: " + std::strerror(errno));
    p += n;
    bytes -= size_t(n);
  }
}

void AtomicFile::commit() {
  // Flushed before the rename so that a power cut cannot leave an empty file under the name.
  if (::fsync(fd_) != 0) throw Error(path_ + ": cannot sync: " + std::strerror(errno));
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw Error(path_ + ": cannot close: " + std::strerror(errno));
  if (::rename(temp_.c_str(), path_.c_str()) != 0)
    throw Error(path_ + ": cannot rename the temporary file into place: " + std::strerror(errno));
  committed_ = true;
}

namespace {

enum class OutputKind { New, Replace, WriteThrough };

// What `path` is as an output, after following symbolic links (`resolved` gets the file that
// will be written). Throws `E` for paths that must not be written.
template <class E>
OutputKind classify_output(const std::string& path, const std::string& what,
                           std::string* resolved) {
  namespace fs = std::filesystem;
  const std::string name = what.empty() ? path : what + " " + path;
  TAPML_REQUIRE(!path.empty(), what + ": empty path");
  std::error_code ec;
  fs::path target = path;
  if (fs::is_symlink(fs::symlink_status(target, ec))) {
    fs::path to = fs::read_symlink(target, ec);
    if (!ec) target = to.is_absolute() ? to : target.parent_path() / to;
    // A chain of links (/dev/stdout -> /proc/self/fd/1 -> ...) resolves to its end.
    fs::path canonical = fs::weakly_canonical(target, ec);
    if (!ec) target = canonical;
  }
  *resolved = target.string();
  fs::file_status st = fs::status(target, ec);
  if (!fs::exists(st)) {
    fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
    if (!fs::is_directory(dir, ec))
      throw E(name + ": the folder " + dir.string() + " does not exist");
    if (::access(dir.c_str(), W_OK) != 0)
      throw E(name + ": cannot write into " + dir.string() + ": " + std::strerror(errno));
    return OutputKind::New;
  }
  if (fs::is_directory(st)) throw E(name + ": is a folder, not a file");
  if (fs::is_character_file(st) || fs::is_fifo(st) || fs::is_socket(st))
    return OutputKind::WriteThrough;
  if (!fs::is_regular_file(st)) throw E(name + ": is not a regular file");
  // Never replace a corpus or a model with a report.
  unsigned char head[16] = {};
  int fd = ::open(target.c_str(), O_RDONLY);
  ssize_t n = fd >= 0 ? ::read(fd, head, sizeof head) : 0;
  if (fd >= 0) ::close(fd);
  if (n >= 16 && std::memcmp(head, "SQLite format 3", 16) == 0)
    throw E(name + ": is an SQLite file (a corpus?); refusing to replace it with output");
  if (n >= 4 && std::memcmp(head, "GGUF", 4) == 0)
    throw E(name + ": is a GGUF model; refusing to replace it with output");
  if (n >= 9 && head[8] == '{' && head[5] == 0 && head[6] == 0 && head[7] == 0)
    throw E(name + ": is a safetensors file; refusing to replace it with output");
  if (::access(target.c_str(), W_OK) != 0)
    throw E(name + ": cannot write: " + std::strerror(errno));
  return OutputKind::Replace;
}

void write_through(const std::string& path, std::span<const std::span<const std::byte>> pieces) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND);
  if (fd < 0) fd = ::open(path.c_str(), O_WRONLY);
  if (fd < 0) throw Error(path + ": cannot open for writing: " + std::strerror(errno));
  for (std::span<const std::byte> piece : pieces) {
    const char* p = reinterpret_cast<const char*>(piece.data());
    size_t left = piece.size();
    while (left > 0) {
      ssize_t w = ::write(fd, p, std::min<size_t>(left, size_t(1) << 30));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        int err = errno;
        ::close(fd);
        throw Error(path + ": write failed: " + std::strerror(err));
      }
      p += w;
      left -= size_t(w);
    }
  }
  if (::close(fd) != 0) throw Error(path + ": cannot close: " + std::strerror(errno));
}

}  // namespace

void check_output_path(const std::string& path, const std::string& what) {
  std::string resolved;
  classify_output<UsageError>(path, what, &resolved);
}

void write_file_atomically(const std::string& path,
                           std::span<const std::span<const std::byte>> pieces) {
  AtomicFile f(path);
  for (std::span<const std::byte> piece : pieces) f.write(piece.data(), piece.size());
  f.commit();
}

void write_file_atomically(const std::string& path, std::string_view text) {
  AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

void write_output(const std::string& path, std::span<const std::span<const std::byte>> pieces) {
  std::string resolved;
  if (classify_output<Error>(path, "", &resolved) == OutputKind::WriteThrough)
    return write_through(resolved, pieces);
  write_file_atomically(resolved, pieces);
}

void write_output(const std::string& path, std::string_view text) {
  std::span<const std::byte> bytes = std::as_bytes(std::span(text.data(), text.size()));
  write_output(path, std::span(&bytes, 1));
}

}  // namespace tapml

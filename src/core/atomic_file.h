// Files written whole or not at all: the bytes go to a temporary file beside the target,
// which commit() flushes and renames into place, so a reader (or a crash) sees the old file
// or the complete new one, never a part. Without commit() the temporary file is removed.
#pragma once
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace tapml {

class AtomicFile {
 public:
  // Creates the temporary file (mode 0644). Error when it cannot.
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // The temporary file's descriptor, for writers that buffer on their own.
  int fd() const { return fd_; }
  void write(const void* data, size_t bytes);
  // fsync, close and rename onto the target. Error on any failure.
  void commit();

 private:
  std::string path_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

// The concatenation of `pieces`, or `text`, written atomically to `path`.
void write_file_atomically(const std::string& path,
                           std::span<const std::span<const std::byte>> pieces);
void write_file_atomically(const std::string& path, std::string_view text);

}  // namespace tapml

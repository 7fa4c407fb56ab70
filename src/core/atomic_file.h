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

// The concatenation of `pieces`, or `text`, written atomically to `path` (a file TapML owns:
// an export, a model it writes).
void write_file_atomically(const std::string& path,
                           std::span<const std::span<const std::byte>> pieces);
void write_file_atomically(const std::string& path, std::string_view text);

// Output files a user names (--json, --junit, --html, --logits-out):
//   - a character device, FIFO or socket (/dev/stdout, /dev/null, a pipe) is written through;
//   - a symbolic link is followed: its target is replaced, the link stays;
//   - a regular file is replaced atomically (temporary file + rename), unless it is a corpus
//     (an SQLite file) or a model (GGUF, safetensors), which are refused so that a slip in
//     the arguments cannot destroy one;
//   - a directory, or a missing or read-only parent directory, is an error.
// check_output_path says so before any work is done (UsageError naming `what`, the flag);
// write_output applies the same rules when it writes.
void check_output_path(const std::string& path, const std::string& what);
void write_output(const std::string& path, std::span<const std::span<const std::byte>> pieces);
void write_output(const std::string& path, std::string_view text);

}  // namespace tapml

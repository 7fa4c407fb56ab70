// A whole file mapped read-only into memory. The mapping lives as long as the last
// shared_ptr to it, so tensors can borrow bytes from a model file without copying them.
// Opening fails with an Error naming the path for missing files, directories, special
// files and unreadable files. An empty file maps to size 0 with a non-null data pointer.
// The file must not be truncated while mapped (the OS would signal SIGBUS on access).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace tapml {

class MappedFile {
 public:
  static std::shared_ptr<const MappedFile> open(const std::string& path);

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  MappedFile() = default;

  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  void* mapping_ = nullptr;  // what munmap needs; null for an empty file
};

}  // namespace tapml

#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace tapml {

namespace {

// Closes the descriptor on every path out of open(); the mapping outlives it.
struct Descriptor {
  int fd = -1;
  ~Descriptor() {
    if (fd >= 0) ::close(fd);
  }
};

std::string reason(int err) {
  if (err == ENOENT) return "no such file";
  if (err == EACCES) return "permission denied";
  if (err == ENOTDIR) return "a component of the path is not a directory";
  return std::strerror(err);
}

const uint8_t kEmpty[1] = {0};

}  // namespace

std::shared_ptr<const MappedFile> MappedFile::open(const std::string& path) {
  TAPML_REQUIRE(!path.empty(), "empty file path");
  Descriptor d;
  do {
    d.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (d.fd < 0 && errno == EINTR);
  if (d.fd < 0) throw Error(path + ": cannot open: " + reason(errno));

  struct stat st {};
  if (::fstat(d.fd, &st) != 0) throw Error(path + ": cannot stat: " + reason(errno));
  if (S_ISDIR(st.st_mode)) throw Error(path + ": is a directory, expected a file");
  // Pipes and devices have no fixed size to map.
  if (!S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");

  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = size_t(st.st_size);
  if (m->size_ == 0) {
    m->data_ = kEmpty;  // mmap rejects length 0
    return m;
  }
  void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, d.fd, 0);
  if (p == MAP_FAILED) throw Error(path + ": cannot map into memory: " + reason(errno));
  m->mapping_ = p;
  m->data_ = static_cast<const uint8_t*>(p);
  return m;
}

MappedFile::~MappedFile() {
  if (mapping_) ::munmap(mapping_, size_);
}

}  // namespace tapml

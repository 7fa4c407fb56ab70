#include "backends/webgpu/device_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "core/error.h"

namespace tapml {

DeviceProcess::DeviceProcess(const std::vector<std::string>& argv) {
  TAPML_REQUIRE(!argv.empty(), "no command to start");
  // Everything the child needs is prepared before fork: after it, a threaded process may
  // only call async-signal-safe functions until exec.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::string failure = "cannot start " + argv[0] + ": ";
  int out[2];
  TAPML_REQUIRE(::pipe2(out, O_CLOEXEC) == 0, failure + std::strerror(errno));
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out[0]), ::close(out[1]);
    throw Error(failure + std::strerror(errno));
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::execvp(args[0], args.data());
    const char* why = std::strerror(errno);
    (void)!::write(2, failure.data(), failure.size());
    (void)!::write(2, why, std::strlen(why));
    (void)!::write(2, "\n", 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also here, so the group exists whichever side runs first
  ::close(out[1]);
  pid_ = pid;
  reader_ = std::thread([this, fd = out[0]] { read_output(fd); });
}

DeviceProcess::~DeviceProcess() {
  if (!ended()) {
    ::kill(-pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (!ended() && std::chrono::steady_clock::now() < deadline) ::usleep(20000);
    if (!ended()) {
      ::kill(-pid_, SIGKILL);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
  }
  ::kill(-pid_, SIGKILL);  // whatever the runner left behind in its group
  stop_reading_ = true;
  if (reader_.joinable()) reader_.join();
}

std::optional<std::string> DeviceProcess::ended() {
  if (status_) return status_;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) != pid_) return std::nullopt;
  if (WIFEXITED(status))
    status_ = "exited with status " + std::to_string(WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    status_ = "killed by signal " + std::to_string(WTERMSIG(status));
  else
    status_ = "ended";
  // What it printed last may still sit in the pipe: let the reader take it (until the pipe's
  // end, which a child it left behind may hold open, so for a second at most), so that the
  // error naming this end shows it.
  for (int i = 0; i < 200 && !output_closed_; ++i) ::usleep(5000);
  return status_;
}

std::string DeviceProcess::last_lines() const {
  std::lock_guard lock(mutex_);
  std::string text;
  for (const std::string& l : lines_) text += (text.empty() ? "" : "\n") + l;
  if (!partial_.empty()) text += (text.empty() ? "" : "\n") + partial_;
  return text;
}

void DeviceProcess::read_output(int fd) {
  char buf[4096];
  while (!stop_reading_) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    std::lock_guard lock(mutex_);
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n') {
        lines_.push_back(std::move(partial_));
        partial_.clear();
        if (lines_.size() > 12) lines_.pop_front();
      } else if (partial_.size() < 1000) {
        partial_ += buf[i];
      }
    }
  }
  ::close(fd);
  output_closed_ = true;
}

}  // namespace tapml

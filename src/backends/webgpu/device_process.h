// A device runner (headless Chromium or the Node runner) started by the webgpu backend: its
// own process group, killed with it, and killed by the kernel should this process die first
// (PR_SET_PDEATHSIG, bound to the thread that started it). Its stdout and stderr are kept as
// the last lines, for error messages.
#pragma once
#include <sys/types.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace tapml {

class DeviceProcess {
 public:
  // Starts argv[0] (looked up in PATH) with `argv`; throws Error if it cannot be started.
  explicit DeviceProcess(const std::vector<std::string>& argv);
  // SIGTERM to the group, SIGKILL after 3 s, then reaps it.
  ~DeviceProcess();
  DeviceProcess(const DeviceProcess&) = delete;
  DeviceProcess& operator=(const DeviceProcess&) = delete;

  // "exited with status 1" or "killed by signal 9" once the process has ended, else nullopt.
  std::optional<std::string> ended();
  // Its process id, which leads its process group.
  pid_t pid() const { return pid_; }
  // Its last lines of output (stdout and stderr together), "\n"-joined; "" if none.
  std::string last_lines() const;

 private:
  void read_output(int fd);

  pid_t pid_ = -1;
  std::optional<std::string> status_;
  std::thread reader_;
  std::atomic<bool> stop_reading_{false};
  std::atomic<bool> output_closed_{false};  // the reader has seen the pipe's end
  mutable std::mutex mutex_;
  std::deque<std::string> lines_;
  std::string partial_;
};

}  // namespace tapml

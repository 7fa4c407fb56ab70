// The thread that talks to an OpenCL command queue. Some drivers take 5-10 us of host time
// per kernel launch (NVIDIA's OpenCL on an H200: 6-8 us), as long as a decode step's own
// bookkeeping; with the launches made here, the caller goes on to its next call while the
// driver takes its time. Commands run in the order they were given, so the queue sees them
// in call order; read(), write() and finish() wait for theirs. A failure inside the thread
// is thrown from the next call (and every one after it: the queue's state is then unknown).
//
// Kernel arguments are set here only (clSetKernelArg is the one call that must not race on a
// kernel object); kernels and buffers may be created on any thread.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "backends/opencl/cl_api.h"

namespace tapml::opencl {

// A kernel's arguments by value, in order, kept inline (a decode step packs ~50 launches'
// arguments; no allocation per launch).
class KernelArgs {
 public:
  static constexpr size_t kMaxArgs = 64, kMaxBytes = 1024;
  void add(const void* p, size_t size);
  size_t count() const { return count_; }
  const unsigned char* at(size_t i) const { return bytes_ + offsets_[i]; }
  size_t size(size_t i) const { return sizes_[i]; }

 private:
  alignas(16) unsigned char bytes_[kMaxBytes];
  uint16_t offsets_[kMaxArgs], sizes_[kMaxArgs];
  size_t count_ = 0, used_ = 0;
};

class Submitter {
 public:
  struct Options {
    // The queue was made with CL_QUEUE_PROFILING_ENABLE; each kernel's device time is then
    // gathered (kernel_times()).
    bool profile = false;
    // Out of commands, clFlush: drivers may hold queued kernels back until a flush or a
    // blocking call, leaving the device idle while the step is still being built. (Polling
    // for the next command instead of sleeping was measured too, on an H200: slower, as it
    // then flushes after nearly every launch; so was a flush after every 2, 4 or 8 launches:
    // 125M decode 871-883 against ~1,000 tok/s.)
    bool flush_when_idle = false;
    // Arguments equal to those a kernel object was last launched with are not set again
    // (they stay set on the object): the backend launches a decode step's n-th call of a
    // kernel on the same copy of it each step, so most arguments repeat.
    bool skip_unchanged_args = true;
  };
  Submitter(const ClApi& cl, cl_command_queue queue, Options options);
  ~Submitter();  // waits for every command, then stops the thread
  Submitter(const Submitter&) = delete;
  Submitter& operator=(const Submitter&) = delete;

  void launch(cl_kernel kernel, const char* name, KernelArgs args, size_t global, size_t local);
  // A write from memory that stays valid and unchanged until the next finish() or read()
  // returns (pinned staging), not waited for.
  void write_async(cl_mem mem, size_t offset, size_t bytes, const void* src);
  void write(cl_mem mem, size_t offset, size_t bytes, const void* src);  // waits
  void read(cl_mem mem, size_t offset, size_t bytes, void* dst);         // waits
  void finish();                                                         // waits
  // Releases the buffer once every earlier command has been enqueued (the queue keeps it
  // alive while they run).
  void release(cl_mem mem);

  struct KernelTime {
    int64_t calls = 0;
    double seconds = 0;
  };
  // After finish(): each kernel's device time (profile only), and the host seconds spent
  // in clSetKernelArg + clEnqueueNDRangeKernel.
  const std::map<std::string, KernelTime>& kernel_times() const { return times_; }
  double enqueue_seconds() const { return enqueue_s_; }
  int64_t launches() const { return launches_; }
  int64_t args_set() const { return args_set_; }          // clSetKernelArg calls
  int64_t args_skipped() const { return args_skipped_; }  // arguments already set
  int64_t sleeps() const { return sleeps_; }              // times the thread slept waiting for work
  int64_t flushes() const { return flushes_; }            // clFlush calls when idle

 private:
  struct Command {
    enum Kind { Launch, WriteAsync, Write, Read, Finish, Release, Stop } kind = Finish;
    cl_kernel kernel = nullptr;
    const char* name = "";
    KernelArgs args;
    size_t global = 0, local = 0;
    cl_mem mem = nullptr;
    size_t offset = 0, bytes = 0;
    const void* src = nullptr;
    void* dst = nullptr;
    uint64_t ticket = 0;  // for the commands a caller waits on
  };

  static Command transfer(Command::Kind kind, cl_mem mem, size_t offset, size_t bytes);
  void push(Command c);
  void push_and_wait(Command c);
  void run();
  void execute(Command& c);
  void gather_events();
  void throw_if_failed();  // with mu_ held
  void wait_for_work(std::unique_lock<std::mutex>& lock);

  const ClApi& cl_;
  cl_command_queue queue_;
  Options options_;

  std::mutex mu_;
  std::condition_variable work_, done_;
  std::deque<Command> commands_;
  uint64_t next_ticket_ = 1, done_ticket_ = 0;
  std::string error_;
  bool sleeping_ = false;  // the thread waits on work_ (with mu_)

  // The thread's own (read by the caller only after a wait).
  std::unordered_map<cl_kernel, KernelArgs> last_args_;
  int64_t args_set_ = 0, args_skipped_ = 0;
  std::vector<std::pair<const char*, cl_event>> events_;
  std::map<std::string, KernelTime> times_;
  double enqueue_s_ = 0;
  int64_t launches_ = 0, sleeps_ = 0, flushes_ = 0;
  bool launched_since_flush_ = false;

  std::thread thread_;
};

}  // namespace tapml::opencl

#include "backends/opencl/submitter.h"

#include <chrono>
#include <cstring>
#include <utility>

#include "core/error.h"

namespace tapml::opencl {

void KernelArgs::add(const void* p, size_t size) {
  const size_t at = (used_ + 15) / 16 * 16;  // vector types (cl_ulong16...) keep their alignment
  TAPML_REQUIRE(count_ < kMaxArgs && at + size <= kMaxBytes,
                "internal: opencl kernel argument " + std::to_string(count_) + " of " +
                    std::to_string(size) + " bytes does not fit KernelArgs");
  std::memcpy(bytes_ + at, p, size);
  offsets_[count_] = uint16_t(at);
  sizes_[count_++] = uint16_t(size);
  used_ = at + size;
}

Submitter::Submitter(const ClApi& cl, cl_command_queue queue, Options options)
    : cl_(cl), queue_(queue), options_(options), thread_([this] { run(); }) {}

Submitter::~Submitter() {
  Command stop;
  stop.kind = Command::Stop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    commands_.push_back(std::move(stop));
  }
  work_.notify_one();
  thread_.join();
}

void Submitter::throw_if_failed() {
  if (!error_.empty()) throw Error(error_);
}

void Submitter::push(Command c) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    throw_if_failed();
    commands_.push_back(std::move(c));
    wake = sleeping_;
  }
  if (wake) work_.notify_one();
}

void Submitter::push_and_wait(Command c) {
  std::unique_lock<std::mutex> lock(mu_);
  throw_if_failed();
  const uint64_t ticket = next_ticket_++;
  c.ticket = ticket;
  commands_.push_back(std::move(c));
  if (sleeping_) work_.notify_one();
  done_.wait(lock, [&] { return done_ticket_ >= ticket || !error_.empty(); });
  throw_if_failed();
}

void Submitter::launch(cl_kernel kernel, const char* name, KernelArgs args, size_t global,
                       size_t local) {
  Command c;
  c.kind = Command::Launch;
  c.kernel = kernel;
  c.name = name;
  c.args = std::move(args);
  c.global = global;
  c.local = local;
  push(std::move(c));
}

Submitter::Command Submitter::transfer(Command::Kind kind, cl_mem mem, size_t offset,
                                       size_t bytes) {
  Command c;
  c.kind = kind;
  c.mem = mem;
  c.offset = offset;
  c.bytes = bytes;
  return c;
}

void Submitter::write_async(cl_mem mem, size_t offset, size_t bytes, const void* src) {
  Command c = transfer(Command::WriteAsync, mem, offset, bytes);
  c.src = src;
  push(std::move(c));
}

void Submitter::write(cl_mem mem, size_t offset, size_t bytes, const void* src) {
  Command c = transfer(Command::Write, mem, offset, bytes);
  c.src = src;
  push_and_wait(std::move(c));
}

void Submitter::read(cl_mem mem, size_t offset, size_t bytes, void* dst) {
  Command c = transfer(Command::Read, mem, offset, bytes);
  c.dst = dst;
  push_and_wait(std::move(c));
}

void Submitter::finish() {
  Command c;
  c.kind = Command::Finish;
  push_and_wait(std::move(c));
}

void Submitter::release(cl_mem mem) {
  Command c;
  c.kind = Command::Release;
  c.mem = mem;
  push(std::move(c));
}

// With mu_ held and no commands: flushes the queue if asked, then sleeps until a command
// comes (a push wakes the thread only when it sleeps).
void Submitter::wait_for_work(std::unique_lock<std::mutex>& lock) {
  if (options_.flush_when_idle && launched_since_flush_) {
    lock.unlock();
    cl_.clFlush(queue_);
    ++flushes_;
    launched_since_flush_ = false;
    lock.lock();
    if (!commands_.empty()) return;
  }
  sleeping_ = true;
  ++sleeps_;
  work_.wait(lock, [&] { return !commands_.empty(); });
  sleeping_ = false;
}

void Submitter::run() {
  std::deque<Command> batch;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (commands_.empty()) wait_for_work(lock);
      batch.swap(commands_);
    }
    for (Command& c : batch) {
      if (c.kind == Command::Stop) {
        cl_.clFinish(queue_);
        gather_events();
        return;
      }
      bool failed;
      {
        std::lock_guard<std::mutex> lock(mu_);
        failed = !error_.empty();
      }
      std::string error;
      if (!failed && c.kind != Command::Release) {
        try {
          execute(c);
        } catch (const std::exception& e) {
          error = e.what();
        }
      } else if (c.kind == Command::Release) {
        cl_.clReleaseMemObject(c.mem);
      }
      if (c.ticket || !error.empty()) {
        std::lock_guard<std::mutex> lock(mu_);
        if (!error.empty() && error_.empty()) error_ = error;
        if (c.ticket) done_ticket_ = c.ticket;
        done_.notify_all();
      }
    }
    batch.clear();
  }
}

void Submitter::execute(Command& c) {
  auto check = [](cl_int r, const std::string& what) {
    if (r != CL_SUCCESS) throw Error("opencl: " + what + " failed: " + cl_error_name(r));
  };
  switch (c.kind) {
    case Command::Launch: {
      const auto start = std::chrono::steady_clock::now();
      // Messages are made only on failure: this thread must keep ahead of kernels that take
      // a few microseconds. `last`: what the object was last launched with (none yet: empty).
      KernelArgs* last =
          options_.skip_unchanged_args ? &last_args_.try_emplace(c.kernel).first->second : nullptr;
      for (size_t i = 0; i < c.args.count(); ++i) {
        if (last && i < last->count() && last->size(i) == c.args.size(i) &&
            std::memcmp(last->at(i), c.args.at(i), c.args.size(i)) == 0) {
          ++args_skipped_;
          continue;
        }
        ++args_set_;
        if (cl_int r = cl_.clSetKernelArg(c.kernel, cl_uint(i), c.args.size(i), c.args.at(i));
            r != CL_SUCCESS) {
          last_args_.erase(c.kernel);  // what is set on the object is no longer known
          check(r,
                std::string("clSetKernelArg (") + c.name + ", argument " + std::to_string(i) + ")");
        }
      }
      if (last) *last = c.args;
      cl_event done = nullptr;
      if (cl_int r = cl_.clEnqueueNDRangeKernel(queue_, c.kernel, 1, nullptr, &c.global, &c.local,
                                                0, nullptr, options_.profile ? &done : nullptr);
          r != CL_SUCCESS)
        check(r, std::string("clEnqueueNDRangeKernel (") + c.name + ", " +
                     std::to_string(c.global) + " items)");
      enqueue_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      ++launches_;
      launched_since_flush_ = true;
      if (options_.profile) {
        events_.push_back({c.name, done});
        if (events_.size() >= 4096) {
          cl_.clFinish(queue_);
          gather_events();
        }
      }
      return;
    }
    case Command::WriteAsync:
    case Command::Write:
      check(cl_.clEnqueueWriteBuffer(queue_, c.mem, c.kind == Command::Write ? CL_TRUE : CL_FALSE,
                                     c.offset, c.bytes, c.src, 0, nullptr, nullptr),
            "clEnqueueWriteBuffer of " + std::to_string(c.bytes) + " bytes");
      return;
    case Command::Read:
      check(cl_.clEnqueueReadBuffer(queue_, c.mem, CL_TRUE, c.offset, c.bytes, c.dst, 0, nullptr,
                                    nullptr),
            "clEnqueueReadBuffer of " + std::to_string(c.bytes) + " bytes");
      return;
    case Command::Finish:
      check(cl_.clFinish(queue_), "clFinish");
      gather_events();
      return;
    default:
      return;
  }
}

void Submitter::gather_events() {
  for (auto& [name, e] : events_) {
    cl_ulong t0 = 0, t1 = 0;
    cl_.clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_START, sizeof t0, &t0, nullptr);
    cl_.clGetEventProfilingInfo(e, CL_PROFILING_COMMAND_END, sizeof t1, &t1, nullptr);
    KernelTime& kt = times_[name];
    kt.calls += 1;
    kt.seconds += t1 > t0 ? double(t1 - t0) * 1e-9 : 0.0;
    cl_.clReleaseEvent(e);
  }
  events_.clear();
}

}  // namespace tapml::opencl

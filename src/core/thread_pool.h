// A small persistent thread pool for data-parallel loops. parallel_for(n, fn) splits [0, n)
// into at most size() contiguous, near-equal ranges and calls fn(begin, end) once per range,
// on the calling thread and on the workers; it returns when all ranges are done and rethrows
// the first exception a range threw. ThreadPool(1) runs everything inline. With
// ranges_per_thread > 1 there are that many times more ranges, claimed by whichever thread is
// free: a thread that is slow (a busy neighbour on a shared machine) then holds up the loop by
// one small range instead of a whole share.
//
// Decode steps issue many small loops, so a dispatch must be cheap: idle workers spin for a
// short while before sleeping on a condition variable, and the caller works on ranges too.
// With at most one range per thread, range i belongs to thread i: it claims and finishes it
// in a slot of its own (a cache line no other thread writes unless it takes over the
// range), so no shared counter is written by every thread in every dispatch; the caller,
// done with its own range, runs any range whose owner has not claimed it yet (a worker
// asleep or descheduled). More ranges than threads are claimed from one shared counter.
// One parallel_for at a time per pool (concurrent callers are serialized); a parallel_for
// issued from inside a range runs inline.
#pragma once
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace tapml {

class ThreadPool {
 public:
  // threads >= 1 (the caller counts as one); throws Error otherwise.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return threads_; }

  template <class F>
  void parallel_for(int64_t n, F&& fn, int ranges_per_thread = 1) {
    if (n <= 0) return;
    if (threads_ == 1 || n == 1 || inside_pool_) {
      fn(int64_t(0), n);
      return;
    }
    using Fn = std::remove_reference_t<F>;
    dispatch(
        n, std::min<int64_t>(int64_t(threads_) * std::max(1, ranges_per_thread), kMaxRanges),
        [](void* ctx, int64_t b, int64_t e) { (*static_cast<Fn*>(ctx))(b, e); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using Task = void (*)(void* ctx, int64_t begin, int64_t end);

  void dispatch(int64_t n, int64_t max_ranges, Task task, void* ctx);
  void worker_loop(int index);
  // Claims and runs ranges of the job published as `generation` until none is left.
  void work_on(uint64_t generation);
  // Thread `index`'s range of an owned-range job `generation`, if still unclaimed.
  void run_owned(uint64_t generation, int64_t index);
  void run_range(int64_t r, int64_t ranges);

  // work_ packs the job generation (high bits), the number of ranges and the next unclaimed
  // range. One word lets a worker claim a range and check that it still belongs to the job
  // it woke for in a single compare-exchange; a late worker can never touch a newer job.
  static constexpr int kRangeBits = 12;  // up to 4095 ranges, > the 1024-thread limit
  static constexpr uint64_t kRangeMask = (uint64_t(1) << kRangeBits) - 1;
  static constexpr int64_t kMaxRanges = int64_t(kRangeMask);
  static constexpr uint64_t kGenMask = (uint64_t(1) << (64 - 2 * kRangeBits)) - 1;
  static uint64_t generation_of(uint64_t w) { return w >> (2 * kRangeBits); }

  // An owned range's state: generation << 2 | kFree, kTaken or kDone; set to kFree for the
  // job by the caller before it publishes the job, so a thread that woke for an older job
  // can never take it. Two cache lines each (adjacent-line prefetch).
  enum : uint64_t { kFree = 0, kTaken = 1, kDone = 2 };
  struct alignas(128) Slot {
    std::atomic<uint64_t> state{0};
  };

  int threads_;
  std::vector<std::thread> workers_;
  std::unique_ptr<Slot[]> slots_;
  std::atomic<uint64_t> work_{0};
  std::atomic<int64_t> done_{0};
  // The current job; written only while no range of the previous job is running.
  Task task_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_ = 0;

  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};

  std::mutex caller_mutex_;
  std::mutex error_mutex_;
  std::exception_ptr error_;

  static thread_local bool inside_pool_;
};

}  // namespace tapml

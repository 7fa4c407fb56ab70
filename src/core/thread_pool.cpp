#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace tapml {

thread_local bool ThreadPool::inside_pool_ = false;

namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long an idle worker keeps polling before it sleeps. Long enough to bridge the gap
// between two kernels of one decode step, short enough not to burn a core when idle.
constexpr auto kSpinTime = std::chrono::microseconds(200);

// The caller's wait for ranges that others run: they are near-equal, so the wait is short;
// spin, then yield.
template <class Done>
void wait_until(Done done) {
  for (int spins = 0; !done(); ++spins) {
    if (spins < 4096)
      cpu_relax();
    else
      std::this_thread::yield();
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads) : threads_(threads) {
  TAPML_REQUIRE(threads >= 1 && threads <= 1024,
                "thread pool: " + std::to_string(threads) + " threads is out of range (1..1024)");
  slots_ = std::make_unique<Slot[]>(size_t(threads));
  workers_.reserve(size_t(threads - 1));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(sleep_mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::dispatch(int64_t n, int64_t max_ranges, Task task, void* ctx) {
  std::lock_guard caller(caller_mutex_);
  int64_t ranges = std::min<int64_t>(n, max_ranges);
  const bool owned = ranges <= threads_;
  task_ = task;
  ctx_ = ctx;
  n_ = n;
  error_ = nullptr;
  done_.store(0, std::memory_order_relaxed);
  const uint64_t generation = (generation_of(work_.load(std::memory_order_relaxed)) + 1) & kGenMask;
  if (owned)
    for (int64_t r = 1; r < ranges; ++r)
      slots_[r].state.store(generation << 2 | kFree, std::memory_order_relaxed);
  // Publishing the new word releases the job fields above to whoever claims a range of it.
  // seq_cst (with sleepers_ below) makes sure a worker going to sleep either sees the new
  // generation or is counted and notified.
  work_.store((generation << (2 * kRangeBits)) | (uint64_t(ranges) << kRangeBits));
  if (sleepers_.load() > 0) {
    { std::lock_guard lock(sleep_mutex_); }
    wake_.notify_all();
  }

  inside_pool_ = true;
  if (owned) {
    // Range 0 is the caller's; then every range whose owner has not taken it yet, and a
    // wait for those that are taken.
    run_range(0, ranges);
    const uint64_t g = generation << 2;
    for (int64_t r = 1; r < ranges; ++r) {
      std::atomic<uint64_t>& st = slots_[r].state;
      uint64_t free_state = g | kFree;
      if (st.compare_exchange_strong(free_state, g | kTaken, std::memory_order_acquire)) {
        run_range(r, ranges);
        continue;
      }
      wait_until([&] { return st.load(std::memory_order_acquire) == (g | kDone); });
    }
    inside_pool_ = false;
  } else {
    work_on(generation);
    inside_pool_ = false;
    // Ranges are near-equal, so the wait for the last worker is short: spin, then yield.
    wait_until([&] { return done_.load(std::memory_order_acquire) >= ranges; });
  }
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void ThreadPool::run_range(int64_t r, int64_t ranges) {
  const int64_t begin = r * n_ / ranges, end = (r + 1) * n_ / ranges;
  try {
    task_(ctx_, begin, end);
  } catch (...) {
    std::lock_guard lock(error_mutex_);
    if (!error_) error_ = std::current_exception();
  }
}

void ThreadPool::run_owned(uint64_t generation, int64_t index) {
  const uint64_t w = work_.load(std::memory_order_acquire);
  if (generation_of(w) != generation) return;
  const int64_t ranges = int64_t((w >> kRangeBits) & kRangeMask);
  if (index >= ranges) return;
  // The slot was set free for this job before the job was published; a thread that woke for
  // an older one finds another state and leaves it alone.
  const uint64_t g = generation << 2;
  std::atomic<uint64_t>& st = slots_[index].state;
  uint64_t free_state = g | kFree;
  if (!st.compare_exchange_strong(free_state, g | kTaken, std::memory_order_acquire)) return;
  run_range(index, ranges);
  st.store(g | kDone, std::memory_order_release);
}

void ThreadPool::work_on(uint64_t generation) {
  uint64_t w = work_.load(std::memory_order_acquire);
  for (;;) {
    if (generation_of(w) != generation) return;
    uint64_t next = w & kRangeMask, ranges = (w >> kRangeBits) & kRangeMask;
    if (next >= ranges) return;
    if (!work_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel,
                                     std::memory_order_acquire))
      continue;
    // The claimed range keeps the job alive (the caller waits for it), so its fields are
    // stable until done_ is bumped.
    run_range(int64_t(next), int64_t(ranges));
    done_.fetch_add(1, std::memory_order_acq_rel);
    w = work_.load(std::memory_order_acquire);
  }
}

void ThreadPool::worker_loop(int index) {
  inside_pool_ = true;
  uint64_t seen = 0;
  for (;;) {
    uint64_t generation = generation_of(work_.load(std::memory_order_acquire));
    if (generation == seen) {
      auto deadline = std::chrono::steady_clock::now() + kSpinTime;
      for (int i = 0; generation == seen; ++i) {
        cpu_relax();
        generation = generation_of(work_.load(std::memory_order_acquire));
        if ((i & 63) == 63 && std::chrono::steady_clock::now() > deadline) break;
      }
    }
    if (generation == seen) {
      std::unique_lock lock(sleep_mutex_);
      sleepers_.fetch_add(1);
      wake_.wait(lock, [&] { return stop_.load() || generation_of(work_.load()) != seen; });
      sleepers_.fetch_sub(1);
      if (stop_.load()) return;
      generation = generation_of(work_.load(std::memory_order_acquire));
    }
    if (stop_.load(std::memory_order_relaxed)) return;
    seen = generation;
    const uint64_t w = work_.load(std::memory_order_acquire);
    if (generation_of(w) == generation && int64_t((w >> kRangeBits) & kRangeMask) <= threads_)
      run_owned(generation, index);
    else
      work_on(generation);
  }
}

}  // namespace tapml

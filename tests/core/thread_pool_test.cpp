#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/error.h"

namespace tapml {
namespace {

// Every index of [0, n) is visited exactly once, in at most size() * pieces ranges.
void expect_covers(ThreadPool& pool, int64_t n, int pieces = 1) {
  std::vector<std::atomic<int>> hits(size_t(std::max<int64_t>(n, 1)));
  std::atomic<int> calls{0};
  pool.parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        EXPECT_LT(b, e);
        calls.fetch_add(1);
        for (int64_t i = b; i < e; ++i) hits[size_t(i)].fetch_add(1);
      },
      pieces);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << "n=" << n << " i=" << i;
  EXPECT_LE(calls.load(), std::min<int64_t>(n, int64_t(pool.size()) * std::max(pieces, 1)));
  if (n > 0) {
    EXPECT_GE(calls.load(), 1);
  }
}

TEST(ThreadPool, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 2, 3, 4, 7, 64, 1000, 100003}) expect_covers(pool, n);
  }
}

TEST(ThreadPool, SeveralRangesPerThreadCoverEveryIndexOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int pieces : {0, 1, 4, 5000})
      for (int64_t n : {0, 1, 2, 7, 19, 20, 21, 64, 1000, 100003}) expect_covers(pool, n, pieces);
  }
}

// Jobs of one range per thread (each thread's own) and of more ranges (a shared counter)
// back to back, so that workers late for one job meet the next of the other kind.
TEST(ThreadPool, OwnedAndSharedRangesInTurnCoverEveryIndexOnce) {
  for (int threads : {2, 3, 8}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> hits(64);
    for (int i = 0; i < 3000; ++i) {
      const int64_t n = 1 + i % 40;
      const int pieces = i % 3 == 0 ? 4 : 1;
      pool.parallel_for(
          n,
          [&](int64_t b, int64_t e) {
            for (int64_t k = b; k < e; ++k) hits[size_t(k)].fetch_add(1);
          },
          pieces);
      for (int64_t k = 0; k < 64; ++k)
        ASSERT_EQ(hits[size_t(k)].exchange(0), k < n ? 1 : 0) << "job " << i << " index " << k;
    }
  }
}

TEST(ThreadPool, SeveralRangesPerThreadAreNearEqualAndAllRun) {
  ThreadPool pool(4);
  std::mutex m;
  std::vector<int64_t> sizes;
  pool.parallel_for(
      103,
      [&](int64_t b, int64_t e) {
        std::lock_guard lock(m);
        sizes.push_back(e - b);
      },
      4);
  ASSERT_EQ(sizes.size(), 16u);
  for (int64_t s : sizes) {
    EXPECT_GE(s, 6);
    EXPECT_LE(s, 7);
  }
}

TEST(ThreadPool, RangesAreNearEqual) {
  ThreadPool pool(4);
  std::mutex m;
  std::vector<int64_t> sizes;
  pool.parallel_for(103, [&](int64_t b, int64_t e) {
    std::lock_guard lock(m);
    sizes.push_back(e - b);
  });
  ASSERT_EQ(sizes.size(), 4u);
  for (int64_t s : sizes) {
    EXPECT_GE(s, 25);
    EXPECT_LE(s, 26);
  }
}

TEST(ThreadPool, OneThreadRunsInline) {
  ThreadPool pool(1);
  std::thread::id seen;
  int calls = 0;
  pool.parallel_for(10, [&](int64_t b, int64_t e) {
    seen = std::this_thread::get_id();
    ++calls;
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 10);
  });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, std::this_thread::get_id());
}

TEST(ThreadPool, UsesSeveralThreads) {
  ThreadPool pool(3);
  std::mutex m;
  std::set<std::thread::id> ids;
  // Each range waits for the others, so three distinct threads must have taken part.
  std::atomic<int> arrived{0};
  pool.parallel_for(3, [&](int64_t, int64_t) {
    {
      std::lock_guard lock(m);
      ids.insert(std::this_thread::get_id());
    }
    arrived.fetch_add(1);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (arrived.load() < 3 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
  });
  EXPECT_EQ(ids.size(), 3u);
}

TEST(ThreadPool, ManySmallDispatches) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  for (int i = 0; i < 20000; ++i)
    pool.parallel_for(5, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  EXPECT_EQ(total.load(), 5 * 20000);
}

TEST(ThreadPool, WakesAfterSleeping) {
  ThreadPool pool(2);
  for (int round = 0; round < 3; ++round) {
    // Longer than the workers' spin, so they are asleep on the condition variable.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    expect_covers(pool, 1000);
  }
}

TEST(ThreadPool, RethrowsTheFirstException) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.parallel_for(30,
                                 [&](int64_t b, int64_t) {
                                   if (b >= 10) throw std::runtime_error("range failed");
                                 }),
               std::runtime_error);
  // The pool stays usable.
  expect_covers(pool, 500);
}

TEST(ThreadPool, NestedCallsRunInline) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  pool.parallel_for(4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      pool.parallel_for(10, [&](int64_t b2, int64_t e2) {
        EXPECT_EQ(e2 - b2, 10);  // inline: one range covering everything
        total.fetch_add(e2 - b2);
      });
  });
  EXPECT_EQ(total.load(), 40);
}

TEST(ThreadPool, ConcurrentCallersAreSerialized) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  auto caller = [&] {
    for (int i = 0; i < 2000; ++i)
      pool.parallel_for(7, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  };
  std::thread a(caller), b(caller);
  a.join();
  b.join();
  EXPECT_EQ(total.load(), 2 * 2000 * 7);
}

TEST(ThreadPool, AcceptsStdFunction) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  const std::function<void(int64_t, int64_t)> fn = [&](int64_t b, int64_t e) { total += e - b; };
  pool.parallel_for(100, fn);
  EXPECT_EQ(total.load(), 100);
}

TEST(ThreadPool, RejectsBadThreadCounts) {
  EXPECT_THROW(ThreadPool(0), Error);
  EXPECT_THROW(ThreadPool(-3), Error);
  EXPECT_THROW(ThreadPool(1025), Error);
}

}  // namespace
}  // namespace tapml

// The Recorder: an observer of the dispatcher that turns a real model run into carved
// tests. Before each call it snapshots the inputs (so in-place ops are recorded right), after
// it the outputs; then pruning decides what to keep. Calls with the same signature (op,
// attributes, every tensor's dtype and shape) are the same test up to values, so only a few
// representatives per signature are stored:
//   "first"        the first call seen (stored at once, so a killed carve keeps it),
//   "max_input"    the call whose activations reach the largest magnitude,
//   "late_decode"  the call from the latest decode step,
//   "sample"       further calls chosen by seeded reservoir sampling when keep > 3.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "carve/corpus.h"
#include "carve/test_case.h"
#include "runtime/dispatcher.h"

namespace tapml {

struct CarveStats {
  int64_t calls_seen = 0;
  int64_t signatures = 0;
  int64_t tests_kept = 0;
  std::map<std::string, int64_t> calls_per_op, tests_per_op;
};

class Recorder final : public CallObserver {
 public:
  // `keep` representatives per signature (>= 1). `before_store` may fill in a test before it
  // is written (the noise calibration); it runs once per stored test.
  Recorder(Corpus& corpus, int keep, std::function<void(TestCase&)> before_store = {},
           uint64_t seed = 1);

  // Which carve prompt the following calls belong to.
  void set_prompt_index(int i) { prompt_index_ = i; }
  void before_call(const CallEvent& e, Dispatcher& d) override;
  void after_call(const CallEvent& e, Dispatcher& d) override;
  // Stores the representatives still held back. Call once at the end.
  void finish();
  // The representatives held back so far, as outlines: with the corpus, what the carve has
  // covered before finish().
  std::vector<TestOutline> held() const;
  const CarveStats& stats() const { return stats_; }

 private:
  struct Held {
    TestCase test;
    double magnitude = 0;
    int decode_step = -1;
    bool present = false;
  };
  struct Slots {
    int64_t seen = 0;
    int64_t first_call = -1;
    Held max_input, late_decode;
    std::vector<Held> samples;
  };
  void store(TestCase& t, const char* why);

  Corpus& corpus_;
  int keep_;
  std::function<void(TestCase&)> before_store_;
  std::mt19937_64 rng_;
  std::map<std::string, Slots> slots_;
  TestCase pending_;  // inputs of the call in flight
  std::map<std::string, Tensor> weights_;
  int prompt_index_ = 0;
  CarveStats stats_;
};

}  // namespace tapml

#include "carve/recorder.h"

#include <cmath>

#include "core/error.h"

namespace tapml {

namespace {

// The largest |x| over the activations among a call's inputs (weights are the same in every
// call of a site, so they say nothing about which call is extreme).
double activation_magnitude(const TestCase& t) {
  double m = 0;
  for (size_t i = 0; i < t.inputs.size(); ++i) {
    const Tensor& x = t.inputs[i];
    if (!t.input_weights[i].empty() || x.dtype() != DType::F32) continue;
    const float* p = x.data<float>();
    for (int64_t j = 0; j < x.numel(); ++j) m = std::max(m, double(std::fabs(p[j])));
  }
  return m;
}

}  // namespace

Recorder::Recorder(Corpus& corpus, int keep, std::function<void(TestCase&)> before_store,
                   uint64_t seed)
    : corpus_(corpus), keep_(keep), before_store_(std::move(before_store)), rng_(seed) {
  TAPML_REQUIRE(keep >= 1, "--keep must be at least 1");
}

void Recorder::before_call(const CallEvent& e, Dispatcher& d) {
  pending_ = TestCase{};
  pending_.op = e.call->op;
  pending_.attrs = e.call->attrs;
  pending_.site = e.site;
  pending_.phase = e.phase;
  pending_.call_index = int64_t(e.index);
  pending_.prompt_index = prompt_index_;
  for (Val v : e.inputs) {
    std::string weight = d.weight_name(v);
    if (weight.empty()) {
      pending_.inputs.push_back(d.read(v));
    } else {
      // Weights never change: copy each to the host once.
      auto [it, fresh] = weights_.try_emplace(weight);
      if (fresh) it->second = d.read(v);
      pending_.inputs.push_back(it->second);
    }
    pending_.input_weights.push_back(std::move(weight));
  }
}

void Recorder::after_call(const CallEvent& e, Dispatcher& d) {
  TestCase t = std::move(pending_);
  for (Val v : e.outputs) t.outputs.push_back(d.read(v));
  stats_.calls_seen++;
  stats_.calls_per_op[std::string(op_name(t.op))]++;

  auto [it, fresh] = slots_.try_emplace(t.signature());
  Slots& s = it->second;
  if (fresh) stats_.signatures++;
  s.seen++;
  if (fresh) {
    s.first_call = t.call_index;
    store(t, "first");
    return;
  }
  if (keep_ < 2) return;
  double mag = activation_magnitude(t);
  int step = t.phase.is_prefill() ? -1 : t.phase.decode_step;
  // Held back until finish(): a later call may still beat it.
  auto hold = [&](Held& h, double magnitude) {
    h.test = t;
    h.magnitude = magnitude;
    h.decode_step = step;
    h.present = true;
  };
  if (!s.max_input.present || mag > s.max_input.magnitude) hold(s.max_input, mag);
  if (keep_ >= 3 && step >= 0 && step >= s.late_decode.decode_step) hold(s.late_decode, mag);
  if (keep_ > 3) {
    // Reservoir sampling over the calls after the first.
    size_t room = size_t(keep_ - 3);
    if (s.samples.size() < room) {
      s.samples.emplace_back();
      hold(s.samples.back(), mag);
    } else if (std::uniform_int_distribution<int64_t>(0, s.seen - 2)(rng_) < int64_t(room)) {
      hold(s.samples[std::uniform_int_distribution<size_t>(0, room - 1)(rng_)], mag);
    }
  }
}

void Recorder::store(TestCase& t, const char* why) {
  t.kept_because = why;
  if (before_store_) before_store_(t);
  t.id = corpus_.add(t);
  stats_.tests_kept++;
  stats_.tests_per_op[std::string(op_name(t.op))]++;
}

std::vector<TestOutline> Recorder::held() const {
  std::vector<TestOutline> out;
  for (auto& [sig, s] : slots_) {
    for (const Held* h : {&s.max_input, &s.late_decode})
      if (h->present) out.push_back(outline(h->test));
    for (const Held& h : s.samples)
      if (h.present) out.push_back(outline(h.test));
  }
  return out;
}

void Recorder::finish() {
  for (auto& [sig, s] : slots_) {
    std::vector<int64_t> stored{s.first_call};
    auto flush = [&](Held& h, const char* why) {
      if (!h.present) return;
      for (int64_t c : stored)
        if (c == h.test.call_index) return;  // the same call kept for another reason
      stored.push_back(h.test.call_index);
      store(h.test, why);
    };
    flush(s.max_input, "max_input");
    flush(s.late_decode, "late_decode");
    for (Held& h : s.samples) flush(h, "sample");
  }
  slots_.clear();
}

}  // namespace tapml

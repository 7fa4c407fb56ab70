// Isolated comparison: every op call of a run on the source is also run on the target with
// the *source's* inputs, and the target's outputs are judged against the source's by the
// oracle. Because each target call starts from the source's values, an op's error is its
// own and never inherited from an earlier op: a broken rope at blk.2 fails blk.2.rope_q and
// nothing downstream. Calls the target cannot run (its supports() refuses) are recorded as
// not comparable, with the reason: coverage is part of the result, never silently dropped.
// Failures do not stop the run; every site keeps its worst call.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "check/oracle.h"
#include "core/pattern.h"
#include "core/tensor.h"
#include "runtime/device_pool.h"
#include "runtime/dispatcher.h"

namespace tapml {

// What one site's calls did on the target.
struct SiteLocal {
  Site site;
  Op op = Op::Add;
  // calls: seen at the site (compared or not); failed: judged and failed (or the target
  // threw while running it); unsupported: refused by the target's supports().
  int64_t calls = 0, failed = 0, unsupported = 0;
  double worst_ratio = 0;  // largest error/tolerance over its calls (inf for non-numeric failures)
  double worst_error = 0;  // oracle error E at that call
  CheckKind worst_check = CheckKind::Pass;
  std::string worst_detail, unsupported_reason;
  Phase worst_phase;
  // The worst call did not produce outputs: the target threw (worst_detail says what).
  bool worst_threw = false;
  // The types of the model weights its failed calls read, each once in first-seen order, and
  // whether some failed call read no weight: what tells a bug in reading one weight type
  // (shared by several ops) from a bug in one op's arithmetic.
  std::vector<DType> failed_weight_dtypes;
  bool failed_without_weight = false;
  bool pass() const { return failed == 0 && unsupported == 0; }
  int64_t compared() const { return calls - unsupported; }
};

// Observes a run on the source and re-runs every call on `target` with the source's inputs,
// judging the target's outputs against the source's with the oracle; the noise floor of each
// call is computed on `plain_f32` (ref?acc=f32) like carving does. Continues past failures.
// Both backends must outlive the comparator; it must stay attached for whole calls. With a
// pool (that opened both backends), weights are uploaded to each once and kept there rather
// than sent with every call.
class IsolatedComparator final : public CallObserver {
 public:
  IsolatedComparator(Backend& target, Backend& plain_f32, DevicePool* pool = nullptr,
                     TolerancePolicy policy = {});
  // Only calls whose site matches (searched, RE2 syntax) are compared; default all.
  void restrict_sites(const std::string& regex);
  void before_call(const CallEvent& e, Dispatcher& d) override;
  void after_call(const CallEvent& e, Dispatcher& d) override;
  const std::vector<SiteLocal>& sites() const { return sites_; }  // in first-call order
  int64_t calls_compared() const { return calls_compared_; }

 private:
  SiteLocal& site(const CallEvent& e);
  void compare(const CallEvent& e, Dispatcher& d, SiteLocal& s);
  // Counts a failed call of `s`, with the weight types it read.
  void failed(SiteLocal& s) const;
  const std::vector<std::optional<DeviceTensor>>* resident(
      Backend& b, std::vector<std::optional<DeviceTensor>>& slots, const CallEvent& e,
      Dispatcher& d);

  Backend& target_;
  Backend& plain_f32_;
  TolerancePolicy policy_;
  Pattern site_filter_;
  std::vector<SiteLocal> sites_;
  std::map<Site, size_t> site_index_;
  DevicePool* pool_;
  // Of the call in flight, taken before it runs: host values, and for each weight its copy
  // on the target and on plain_f32 (when there is a pool).
  std::vector<Tensor> pending_inputs_;
  std::vector<DType> pending_weight_dtypes_;
  std::vector<std::optional<DeviceTensor>> pending_target_, pending_plain_;
  bool pending_ = false;
  int64_t calls_compared_ = 0;
};

}  // namespace tapml

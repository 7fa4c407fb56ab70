#include "migrate/isolated.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/host_call.h"
#include "core/error.h"

namespace tapml {

namespace {

bool bit_identical(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].dtype() != b[i].dtype() || a[i].shape() != b[i].shape()) return false;
    if (a[i].nbytes() && std::memcmp(a[i].bytes(), b[i].bytes(), a[i].nbytes()) != 0) return false;
  }
  return true;
}

}  // namespace

IsolatedComparator::IsolatedComparator(Backend& target, Backend& plain_f32, DevicePool* pool,
                                       TolerancePolicy policy)
    : target_(target), plain_f32_(plain_f32), policy_(policy), pool_(pool) {}

void IsolatedComparator::restrict_sites(const std::string& regex) {
  site_filter_ = Pattern(regex, "site filter");
}

void IsolatedComparator::before_call(const CallEvent& e, Dispatcher& d) {
  pending_ = site_filter_.search(e.call->site);
  pending_inputs_.clear();
  pending_weight_dtypes_.clear();
  pending_target_.clear();
  pending_plain_.clear();
  if (!pending_) return;
  // Taken now, not after the call: kv_store overwrites its cache inputs in place, and the
  // target must start from the cache as the source saw it.
  for (Val v : e.inputs) {
    if (d.weight_name(v).empty()) {
      pending_inputs_.push_back(d.read(v));
      pending_target_.emplace_back();
      pending_plain_.emplace_back();
      continue;
    }
    // The model's own tensor: no copy, and its bytes name it to the pool.
    const Tensor& w = d.weight_tensor(v);
    pending_inputs_.push_back(w);
    pending_weight_dtypes_.push_back(w.dtype());
    pending_target_.emplace_back();
    pending_plain_.emplace_back();
  }
}

// Weights already on `b` (uploaded through the pool the first time), or none without a pool.
const std::vector<std::optional<DeviceTensor>>* IsolatedComparator::resident(
    Backend& b, std::vector<std::optional<DeviceTensor>>& slots, const CallEvent& e,
    Dispatcher& d) {
  if (!pool_) return nullptr;
  for (size_t i = 0; i < e.inputs.size(); ++i)
    if (!slots[i] && !d.weight_name(e.inputs[i]).empty())
      slots[i] = pool_->weight(b, pending_inputs_[i]);
  return &slots;
}

SiteLocal& IsolatedComparator::site(const CallEvent& e) {
  auto [it, fresh] = site_index_.try_emplace(e.site, sites_.size());
  if (fresh) {
    SiteLocal s;
    s.site = e.site;
    s.op = e.call->op;
    sites_.push_back(std::move(s));
  }
  return sites_[it->second];
}

void IsolatedComparator::after_call(const CallEvent& e, Dispatcher& d) {
  if (!pending_) return;
  pending_ = false;
  SiteLocal& s = site(e);
  s.calls++;
  compare(e, d, s);
  pending_inputs_.clear();
}

void IsolatedComparator::failed(SiteLocal& s) const {
  s.failed++;
  if (pending_weight_dtypes_.empty()) s.failed_without_weight = true;
  for (DType t : pending_weight_dtypes_)
    if (std::find(s.failed_weight_dtypes.begin(), s.failed_weight_dtypes.end(), t) ==
        s.failed_weight_dtypes.end())
      s.failed_weight_dtypes.push_back(t);
}

void IsolatedComparator::compare(const CallEvent& e, Dispatcher& d, SiteLocal& s) {
  const OpCall& call = *e.call;
  auto unsupported = [&](const std::string& reason) {
    s.unsupported++;
    if (s.unsupported_reason.empty()) s.unsupported_reason = reason;
  };
  std::vector<TensorType> in_types;
  for (const DeviceTensor& t : call.inputs) in_types.push_back(t.type());
  Support sup = host_call_support(target_, call.op, call.attrs, in_types, call.site);
  if (!sup.ok) return unsupported(sup.reason);

  std::vector<Tensor> expected;
  for (Val v : e.outputs) expected.push_back(d.read(v));

  // The first judged call of a site sets its worst, so worst_phase always names a call.
  auto record = [&](double ratio, double error, CheckKind check, std::string detail, bool threw) {
    bool first = s.calls - s.unsupported == 1;
    if (!first && !(ratio > s.worst_ratio)) return;
    s.worst_ratio = ratio;
    s.worst_error = error;
    s.worst_check = check;
    s.worst_detail = std::move(detail);
    s.worst_phase = e.phase;
    s.worst_threw = threw;
  };

  HostCallResult got;
  try {
    got = run_host_call(target_, call.op, call.attrs, pending_inputs_, e.call->site,
                        resident(target_, pending_target_, e, d));
  } catch (const std::exception& ex) {
    // run_host_call words a refusal "NAME cannot run OP: REASON"; a supports() that
    // depends on more than types can refuse here although the probe passed.
    std::string what = ex.what();
    std::string marker = " cannot run " + std::string(op_name(call.op)) + ": ";
    if (size_t at = what.find(marker); at != std::string::npos)
      return unsupported(what.substr(at + marker.size()));
    calls_compared_++;
    failed(s);
    record(std::numeric_limits<double>::infinity(), 0, CheckKind::Pass,
           "the target failed to run the call: " + what, true);
    return;
  }
  calls_compared_++;

  // A bit-identical result passes whatever the tolerance, so the noise run is not needed.
  bool guards_ok = true;
  for (bool g : got.guards_intact) guards_ok = guards_ok && g;
  if (guards_ok && bit_identical(expected, got.outputs)) {
    record(0, 0, CheckKind::Pass, "", false);
    return;
  }

  std::vector<double> noise;
  HostCallResult plain = run_host_call(plain_f32_, call.op, call.attrs, pending_inputs_,
                                       e.call->site, resident(plain_f32_, pending_plain_, e, d));
  for (size_t i = 0; i < plain.outputs.size() && i < expected.size(); ++i)
    noise.push_back(measure(expected[i], plain.outputs[i], 0).error);

  std::vector<TensorType> types;
  for (const Tensor& x : pending_inputs_) types.push_back({x.dtype(), x.shape()});
  int64_t k = op_def(call.op).reduction_length(types, call.attrs);
  Verdict v = judge(policy_, call.op, k, expected, got.outputs, got.guards_intact, noise,
                    allowance(policy_, call.op, pending_inputs_, expected));
  if (!v.pass) failed(s);

  // The output that set the verdict's worst ratio names the error.
  double error = 0, worst = -1;
  for (const OutputVerdict& o : v.outputs)
    if (o.ratio > worst) worst = o.ratio, error = o.metrics.error;
  record(v.worst_ratio, error, v.failed, v.detail, false);
}

}  // namespace tapml

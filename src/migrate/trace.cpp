#include "migrate/trace.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"
#include "runtime/generate.h"
#include "runtime/session.h"

namespace tapml {

namespace {

int context_for(const ModelFile& m, size_t positions) {
  return std::max(m.config.max_seq_len, int(positions));
}

// Records every call's outputs in order.
class CallCapture final : public CallObserver {
 public:
  explicit CallCapture(Trace& t) : t_(t) {}
  void after_call(const CallEvent& e, Dispatcher& d) override {
    std::vector<Tensor> outs;
    for (Val v : e.outputs) outs.push_back(d.read(v));
    t_.calls.emplace_back(e.call->site, std::move(outs));
  }

 private:
  Trace& t_;
};

// Lists sites and asks the target whether it could run each call. supports() judges a call
// by its types and attributes, so the source's device tensors serve as the question.
class SiteLister final : public CallObserver {
 public:
  SiteLister(Backend& target, std::vector<SiteInfo>& out) : target_(target), out_(out) {}
  void after_call(const CallEvent& e, Dispatcher&) override {
    auto [it, fresh] = index_.try_emplace(e.site, out_.size());
    if (fresh) out_.push_back({e.site, e.call->op, true, ""});
    SiteInfo& s = out_[it->second];
    if (!s.target_supports) return;
    Support sup = target_.supports(*e.call);
    if (!sup.ok) s.target_supports = false, s.unsupported_reason = sup.reason;
  }

 private:
  Backend& target_;
  std::vector<SiteInfo>& out_;
  std::map<Site, size_t> index_;
};

}  // namespace

std::vector<int> source_sequence(const ModelFile& model, DevicePool& pool, DType kv_cache,
                                 const std::string& source, const std::vector<int>& prompt,
                                 int steps, const std::vector<int>& stop_tokens) {
  Session s(model, Placement(source), pool, context_for(model, size_t(steps)), kv_cache);
  GenerateOptions o;
  o.steps = steps;
  o.stop_tokens = stop_tokens;
  return generate(s, prompt, o).token_ids;
}

Trace run_trace(const ModelFile& model, DevicePool& pool, DType kv_cache,
                const Placement& placement, const std::vector<int>& sequence, int prompt_len,
                bool capture_calls, CallObserver* observer,
                const std::function<void(int)>& on_position) {
  TAPML_REQUIRE(prompt_len >= 1 && size_t(prompt_len) < sequence.size(),
                "run_trace: the sequence must extend past the prompt");
  Trace t;
  Session s(model, placement, pool, context_for(model, sequence.size()), kv_cache);
  CallCapture capture(t);
  if (capture_calls) s.dispatcher().add_observer(&capture);
  if (observer) s.dispatcher().add_observer(observer);
  const int V = model.config.vocab_size;
  std::vector<int32_t> prefill(sequence.begin(), sequence.begin() + prompt_len);
  std::vector<float> rows = s.forward(prefill, true);
  for (int p = 0; p < prompt_len; ++p)
    t.logits.emplace_back(rows.begin() + int64_t(p) * V, rows.begin() + int64_t(p + 1) * V);
  if (on_position) on_position(prompt_len);
  for (size_t i = size_t(prompt_len); i + 1 < sequence.size(); ++i) {
    int32_t id = sequence[i];
    t.logits.push_back(s.forward(std::span<const int32_t>(&id, 1), false));
    if (on_position) on_position(int(i) + 1);
  }
  return t;
}

std::vector<SiteInfo> list_sites(const ModelFile& model, DevicePool& pool, DType kv_cache,
                                 const std::string& source, const std::string& target,
                                 const std::vector<int>& sequence, int prompt_len) {
  std::vector<SiteInfo> sites;
  Session s(model, Placement(source), pool, context_for(model, sequence.size()), kv_cache);
  SiteLister lister(pool.open(target), sites);
  s.dispatcher().add_observer(&lister);
  // A prefill and one decode step show every site and both phases' shapes.
  std::vector<int32_t> prefill(sequence.begin(), sequence.begin() + prompt_len);
  s.forward(prefill, false);
  int32_t next = sequence[size_t(prompt_len)];
  s.forward(std::span<const int32_t>(&next, 1), false);
  return sites;
}

void EndToEnd::merge(const EndToEnd& o) {
  nmse = std::max(nmse, o.nmse);
  kl = std::max(kl, o.kl);
  if (first_mismatch < 0 && o.first_mismatch >= 0) first_mismatch = positions + o.first_mismatch;
  top1_matching += o.top1_matching;
  positions += o.positions;
  finite = finite && o.finite;
}

EndToEnd compare_logits(const Trace& source, const Trace& target) {
  TAPML_REQUIRE(source.logits.size() == target.logits.size(),
                "compare_logits: runs of different lengths");
  EndToEnd r;
  for (size_t p = 0; p < source.logits.size(); ++p) {
    const std::vector<float>& s = source.logits[p];
    const std::vector<float>& t = target.logits[p];
    double num = 0, den = 0, smax = -INFINITY, tmax = -INFINITY;
    bool finite = true;
    for (size_t i = 0; i < s.size(); ++i) {
      finite = finite && std::isfinite(t[i]);
      num += (double(t[i]) - s[i]) * (double(t[i]) - s[i]);
      den += double(s[i]) * s[i];
      smax = std::max(smax, double(s[i]));
      tmax = std::max(tmax, double(t[i]));
    }
    r.positions++;
    if (!finite) {
      r.finite = false;
      r.nmse = r.kl = INFINITY;
      if (r.first_mismatch < 0) r.first_mismatch = int(p);
      continue;
    }
    r.nmse = std::max(r.nmse, den > 0 ? num / den : num);
    // KL(P || Q) with P = softmax(s), Q = softmax(t), in log space for stability.
    double zs = 0, zt = 0;
    for (size_t i = 0; i < s.size(); ++i) zs += std::exp(s[i] - smax), zt += std::exp(t[i] - tmax);
    double lzs = smax + std::log(zs), lzt = tmax + std::log(zt), kl = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      double lp = s[i] - lzs, lq = t[i] - lzt;
      kl += std::exp(lp) * (lp - lq);
    }
    r.kl = std::max(r.kl, std::max(kl, 0.0));
    bool same = std::max_element(s.begin(), s.end()) - s.begin() ==
                std::max_element(t.begin(), t.end()) - t.begin();
    r.top1_matching += same;
    if (!same && r.first_mismatch < 0) r.first_mismatch = int(p);
  }
  return r;
}

}  // namespace tapml

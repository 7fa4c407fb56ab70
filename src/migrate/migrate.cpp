#include "migrate/migrate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <set>

#include "core/error.h"
#include "migrate/isolated.h"

namespace tapml {

std::vector<std::string> minimal_failing_set(
    const std::vector<std::string>& candidates,
    const std::function<bool(const std::vector<std::string>&)>& fails, int* runs) {
  std::vector<std::string> c = candidates;
  size_t n = 2;
  auto test = [&](const std::vector<std::string>& s) {
    if (runs) ++*runs;
    return fails(s);
  };
  while (c.size() >= 2) {
    // Split into n near-equal parts.
    std::vector<std::vector<std::string>> parts(n);
    for (size_t i = 0; i < c.size(); ++i) parts[i * n / c.size()].push_back(c[i]);
    bool reduced = false;
    for (const auto& part : parts) {
      if (!part.empty() && test(part)) {
        c = part;
        n = 2;
        reduced = true;
        break;
      }
    }
    if (!reduced && n > 2) {
      for (size_t k = 0; k < parts.size() && !reduced; ++k) {
        std::vector<std::string> complement;
        for (size_t j = 0; j < parts.size(); ++j)
          if (j != k) complement.insert(complement.end(), parts[j].begin(), parts[j].end());
        if (test(complement)) {
          c = complement;
          n = std::max<size_t>(n - 1, 2);
          reduced = true;
        }
      }
    }
    if (reduced) continue;
    if (n >= c.size()) break;
    n = std::min(2 * n, c.size());
  }
  return c;
}

namespace {

using clock_type = std::chrono::steady_clock;

std::string fmt(double x) {
  if (std::isinf(x)) return "inf";
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", x);
  return b;
}

std::string join(const std::vector<std::string>& xs, const char* sep = ", ") {
  std::string s;
  for (const auto& x : xs) s += (s.empty() ? "" : sep) + x;
  return s;
}

// Runs placements end to end against the source's teacher-forced runs, over every prompt.
class Evaluator {
 public:
  Evaluator(const ModelFile& model, const MigrateOptions& o, DevicePool& pool)
      : model_(model), o_(o), pool_(pool) {
    for (const auto& prompt : o.prompts) {
      sequences_.push_back(source_sequence(model, pool, o.source, prompt, o.steps, o.stop_tokens));
      prompt_lens_.push_back(int(prompt.size()));
      TAPML_REQUIRE(sequences_.back().size() > prompt.size(),
                    "migrate: the source run produced no token after the prompt");
      sources_.push_back(run_trace(model, pool, Placement(o.source), sequences_.back(),
                                   prompt_lens_.back(), false));
    }
  }

  EndToEnd evaluate(const Placement& p) {
    EndToEnd all;
    int64_t before = 0;
    for (size_t i = 0; i < sequences_.size(); ++i) {
      all.merge(
          compare_logits(sources_[i], run_trace(model_, pool_, p, sequences_[i], prompt_lens_[i],
                                                false, nullptr, positions(before))));
      before += int64_t(sequences_[i].size()) - 1;
    }
    ++runs_;
    return all;
  }
  // Reports positions of the current run through the options' callback, `before` done.
  std::function<void(int)> positions(int64_t before) const {
    if (!o_.on_positions) return {};
    return
        [this, before](int done) { o_.on_positions(activity_, before + done, total_positions()); };
  }
  int64_t total_positions() const {
    int64_t n = 0;
    for (const auto& s : sequences_) n += int64_t(s.size()) - 1;
    return n;
  }
  // What the next runs are, for progress ("kinds: matmul").
  void set_activity(std::string what) { activity_ = std::move(what); }
  EndToEnd evaluate_sites(const std::vector<std::string>& sites) {
    std::vector<std::string> key = sites;
    std::sort(key.begin(), key.end());
    std::string k = join(key, "|");
    if (auto it = cache_.find(k); it != cache_.end()) return it->second;
    Placement p(o_.source);
    p.add_sites(sites, o_.target);
    return cache_[k] = evaluate(p);
  }
  bool passes(const EndToEnd& e) const { return e.finite && e.nmse <= threshold_; }

  // Calibrates the threshold from a plain run unless one was given: plain f32 sums, and for a
  // model with quantized weights also 8-bit activations in their matmuls (the formulation
  // the oracle allows them, docs/oracle.md).
  void calibrate(double given) {
    bool quantized = false;
    for (const auto& [name, w] : model_.weights) quantized = quantized || is_block(w.dtype());
    noise_reference_ = quantized ? kQuantizedNoiseReference : kNoiseReference;
    noise_ = evaluate(Placement(noise_reference_)).nmse;
    const double multiple = quantized ? o_.activation_nmse_multiple : o_.noise_multiple;
    threshold_ = given > 0 ? given : std::max(multiple * noise_, 1e-14);
  }

  const std::vector<std::vector<int>>& sequences() const { return sequences_; }
  const std::vector<int>& prompt_lens() const { return prompt_lens_; }
  int runs() const { return runs_; }
  double threshold() const { return threshold_; }
  double noise() const { return noise_; }
  const std::string& noise_reference() const { return noise_reference_; }

 private:
  const ModelFile& model_;
  const MigrateOptions& o_;
  DevicePool& pool_;
  std::vector<std::vector<int>> sequences_;
  std::vector<int> prompt_lens_;
  std::vector<Trace> sources_;
  std::map<std::string, EndToEnd> cache_;
  std::string activity_ = "source";
  int runs_ = 0;
  double threshold_ = 0, noise_ = 0;
  std::string noise_reference_;
};

std::string describe(const EndToEnd& e) {
  std::string s = "nmse " + fmt(e.nmse) + ", KL " + fmt(e.kl) + ", top-1 " +
                  std::to_string(e.top1_matching) + "/" + std::to_string(e.positions);
  if (!e.finite) s += ", non-finite logits";
  if (e.first_mismatch >= 0)
    s += ", first differing token at position " + std::to_string(e.first_mismatch);
  return s;
}

using Group = std::pair<std::string, std::vector<std::string>>;  // label, sites

// One migration, as the steps run() takes in order. Each step reads what the earlier ones
// left in the members and the report.
class Migration {
 public:
  Migration(const ModelFile& model, const MigrateOptions& o, DevicePool& pool, MigrateReport& r)
      : model_(model), o_(o), pool_(pool), r_(r) {}

  void run() {
    calibrate();
    list_coverage();
    walk(groups());
    bisect();
    attribute();
    judge();
  }

 private:
  void say(const std::string& line) const {
    if (o_.progress) o_.progress(line);
  }

  // 1. The source's runs (the reference every step is compared with) and the end-to-end
  // threshold, from a run with plain f32 sums.
  void calibrate() {
    say("running the source (" + o_.source + ") and calibrating the end-to-end threshold");
    ev_.emplace(model_, o_, pool_);
    ev_->set_activity("plain run");
    ev_->calibrate(o_.nmse_threshold);
    r_.noise_nmse = ev_->noise();
    r_.nmse_threshold = ev_->threshold();
  }

  // 2. Every site in model order, and whether the target can run it.
  void list_coverage() {
    infos_ =
        list_sites(model_, pool_, o_.source, o_.target, ev_->sequences()[0], ev_->prompt_lens()[0]);
    for (const SiteInfo& s : infos_) {
      if (!s.target_supports) continue;
      supported_.push_back(s.site.str());
      if (std::find(kinds_.begin(), kinds_.end(), s.op) == kinds_.end()) kinds_.push_back(s.op);
    }
  }

  std::vector<std::string> supported_where(const std::function<bool(const SiteInfo&)>& pred) const {
    std::vector<std::string> out;
    for (const SiteInfo& s : infos_)
      if (s.target_supports && pred(s)) out.push_back(s.site.str());
    return out;
  }

  const SiteInfo& info(const std::string& site) const {
    for (const SiteInfo& s : infos_)
      if (s.site.str() == site) return s;
    throw Error("internal: migrate: no site '" + site + "'");
  }

  // 3. The strategy's groups of sites, moved to the target cumulatively: one op kind at a
  // time (kinds, auto), one layer at a time (layers), or everything at once (bisect).
  std::vector<Group> groups() const {
    std::vector<Group> out;
    if (o_.strategy == "kinds" || o_.strategy == "auto") {
      for (Op k : kinds_)
        out.push_back({"kinds: " + std::string(op_name(k)),
                       supported_where([&](const SiteInfo& s) { return s.op == k; })});
    } else if (o_.strategy == "layers") {
      // Layers in model order: what runs before the blocks, each block, what runs after.
      bool seen_block = false;
      for (const SiteInfo& s : infos_) {
        if (!s.target_supports) continue;
        seen_block = seen_block || s.site.layer >= 0;
        std::string label = s.site.layer >= 0 ? "layers: blk." + std::to_string(s.site.layer)
                            : seen_block      ? "layers: after the blocks"
                                              : "layers: before the blocks";
        if (out.empty() || out.back().first != label) out.push_back({label, {}});
        out.back().second.push_back(s.site.str());
      }
    } else {
      out.push_back({"all sites", supported_});
    }
    return out;
  }

  // Moves the groups over one after another until the output breaks; the failing group and
  // what passed before it are kept for bisection.
  void walk(const std::vector<Group>& groups) {
    std::vector<std::string> placed;
    for (const auto& [label, group] : groups) {
      std::vector<std::string> next = placed;
      next.insert(next.end(), group.begin(), group.end());
      auto ts = clock_type::now();
      ev_->set_activity("step " + std::to_string(r_.timeline.size()) + " " + label);
      EndToEnd e = ev_->evaluate_sites(next);
      MigrationStep step{int(r_.timeline.size()),
                         label,
                         next,
                         e,
                         ev_->passes(e),
                         std::chrono::duration<double>(clock_type::now() - ts).count()};
      say("step " + std::to_string(step.step) + " " + label + " (" + std::to_string(next.size()) +
          " sites on the target): " + (step.pass ? "pass" : "FAIL") + ", " + describe(e));
      r_.timeline.push_back(step);
      if (!step.pass) {
        all_pass_ = false;
        base_ = placed;
        failing_ = group;
        return;
      }
      placed = next;
    }
  }

  // 4. Delta debugging inside the failing group (bisect, auto), with what passed before it
  // kept on the target: a minimal set of sites that still breaks the output.
  void bisect() {
    if (all_pass_ || o_.strategy == "kinds" || o_.strategy == "layers") return;
    say("bisecting " + std::to_string(failing_.size()) + " sites");
    r_.bisect_candidates = int(failing_.size());
    int runs = 0;
    minimal_ = minimal_failing_set(
        failing_,
        [&](const std::vector<std::string>& subset) {
          ev_->set_activity("bisection run " + std::to_string(runs) + ", " +
                            std::to_string(subset.size()) +
                            (subset.size() == 1 ? " site" : " sites"));
          std::vector<std::string> placed = base_;
          placed.insert(placed.end(), subset.begin(), subset.end());
          return !ev_->passes(ev_->evaluate_sites(placed));
        },
        &runs);
    r_.bisect_runs = runs;
    r_.bisect_culprits = minimal_;
    say("bisection: " + join(minimal_) + " after " + std::to_string(runs) + " end-to-end runs");
  }

  // 5. Each site's own error (every call re-run on the target with the source's inputs) and
  // its propagated error (its outputs with every supported site on the target).
  void attribute() {
    say("isolated comparison of every call on the target");
    IsolatedComparator iso(pool_.open(o_.target), pool_.open(kNoiseReference), &pool_);
    Placement all_target(o_.source);
    all_target.add_sites(supported_, o_.target);
    std::map<std::string, double> propagated;
    int64_t before = 0;
    for (size_t i = 0; i < ev_->sequences().size(); ++i) {
      const std::vector<int>& seq = ev_->sequences()[i];
      const int len = ev_->prompt_lens()[i];
      ev_->set_activity("isolated comparison of every call");
      Trace a = run_trace(model_, pool_, Placement(o_.source), seq, len, true, &iso,
                          ev_->positions(before));
      ev_->set_activity("propagated error, everything on the target");
      Trace b =
          run_trace(model_, pool_, all_target, seq, len, true, nullptr, ev_->positions(before));
      before += int64_t(seq.size()) - 1;
      for (size_t c = 0; c < std::min(a.calls.size(), b.calls.size()); ++c) {
        if (a.calls[c].first != b.calls[c].first) break;  // the runs diverged in structure
        double& worst = propagated[a.calls[c].first];
        for (size_t k = 0; k < a.calls[c].second.size(); ++k)
          worst = std::max(worst, measure(a.calls[c].second[k], b.calls[c].second[k], 0).error);
      }
    }
    std::map<Site, const SiteLocal*> local;
    for (const SiteLocal& s : iso.sites()) local[s.site] = &s;
    for (const SiteInfo& s : infos_) {
      SiteAttribution at;
      at.info = s;
      if (auto it = local.find(s.site); it != local.end()) {
        const SiteLocal& l = *it->second;
        at.compared = l.unsupported == 0;
        at.local_ratio = l.worst_ratio;
        at.local_error = l.worst_error;
        at.local_check = check_name(l.worst_check);
        at.calls = l.calls;
        at.failed = l.failed;
      }
      if (auto it = propagated.find(s.site.str()); it != propagated.end()) {
        at.propagated_error = it->second;
        at.propagated_measured = true;
      }
      r_.sites.push_back(at);
    }
  }

  const SiteAttribution* attribution(const std::string& site) const {
    for (const SiteAttribution& a : r_.sites)
      if (a.info.site.str() == site) return &a;
    return nullptr;
  }

  // 6. The verdict: pass, or the culprit sites and ops with their evidence.
  void judge() {
    if (supported_.empty()) {
      // Nothing could move, so nothing was shown to work: not a pass.
      r_.status = "fail";
      r_.summary = o_.target + " supports none of the model's sites (see the coverage list)";
      return;
    }
    if (all_pass_) {
      r_.status = "pass";
      r_.summary = "every supported site runs on " + o_.target + " with the output unchanged (" +
                   describe(r_.timeline.back().e2e) + " with all " +
                   std::to_string(supported_.size()) + " sites on the target)";
      return;
    }
    r_.status = "fail";
    // Bisection gives a minimal set; kinds and layers give the failing group, narrowed to the
    // sites that fail in isolation (or the whole group when none does).
    std::vector<std::string> named = minimal_;
    if (named.empty()) {
      for (const std::string& s : failing_)
        if (const SiteAttribution* a = attribution(s); a && a->failed > 0) named.push_back(s);
      if (named.empty()) named = failing_;
    }
    const MigrationStep& broke = r_.timeline.back();
    auto isolated = [&](const SiteAttribution* a) {
      return "isolated: fails " + std::to_string(a->failed) + " of " + std::to_string(a->calls) +
             " calls (" + a->local_check +
             // NaN, Inf, guard and exactness failures have no finite ratio to quote.
             (std::isfinite(a->local_ratio) ? ", worst " + fmt(a->local_ratio) + "x tolerance"
                                            : std::string()) +
             ")";
    };
    auto add_culprit = [&](const std::string& site, std::string evidence) {
      const Op op = info(site).op;
      r_.culprits.push_back({site, op, std::move(evidence)});
      if (std::find(r_.culprit_ops.begin(), r_.culprit_ops.end(), op) == r_.culprit_ops.end())
        r_.culprit_ops.push_back(op);
    };
    bool any_fails_alone = false;
    for (const std::string& site : named) {
      const SiteAttribution* a = attribution(site);
      std::string evidence;
      if (a && a->failed > 0) {
        evidence = isolated(a);
        any_fails_alone = true;
      } else if (a && a->compared) {
        evidence =
            "isolated: passes every call (worst " + fmt(a->local_ratio) +
            "x tolerance), so the error comes from state or from its interaction with other sites";
      }
      evidence += "; end to end, step '" + broke.label + "': " + describe(broke.e2e);
      add_culprit(site, evidence);
    }
    if (!any_fails_alone) {
      r_.summary = "the output breaks with " + join(named) + " on " + o_.target +
                   ", but none of their calls fails in isolation: the error accumulates over " +
                   "many calls, or the threshold is too tight (NMSE threshold " +
                   fmt(r_.nmse_threshold) + ", a plain run (" + ev_->noise_reference() +
                   ") reaches " + fmt(r_.noise_nmse) + ")";
      return;
    }
    // A fault at several sites: each site of the culprits' ops that fails in isolation is
    // named, though bisection needed only some of them to break the output.
    const std::vector<Op> ops = r_.culprit_ops;
    for (Op op : ops)
      for (const std::string& site : supported_where([&](const SiteInfo& s) { return s.op == op; }))
        if (const SiteAttribution* a = attribution(site);
            a && a->failed > 0 && std::find(named.begin(), named.end(), site) == named.end())
          add_culprit(site, isolated(a) + "; the output breaks with " + join(named) +
                                " alone, and this site is wrong too");
    for (Op op : r_.culprit_ops) {
      const std::string name(op_name(op));
      std::vector<std::string> all = supported_where([&](const SiteInfo& s) { return s.op == op; });
      std::vector<std::string> failing_alone, at;
      for (const std::string& s : all)
        if (const SiteAttribution* a = attribution(s); a && a->failed > 0)
          failing_alone.push_back(s);
      for (const Culprit& c : r_.culprits)
        if (c.op == op) at.push_back(c.site);
      std::string scope = failing_alone.size() == all.size() && all.size() > 1
                              ? "every " + name + " site fails in isolation"
                              : std::to_string(failing_alone.size()) + " of " +
                                    std::to_string(all.size()) + " " + name +
                                    " sites fail in isolation";
      r_.summary += (r_.summary.empty() ? "" : "; ") + name + " at " +
                    (at.size() > 6 ? std::to_string(at.size()) + " sites" : join(at)) +
                    " breaks the output (" + scope + ")";
    }
  }

 public:
  int runs() const { return ev_ ? ev_->runs() : 0; }

 private:
  const ModelFile& model_;
  const MigrateOptions& o_;
  DevicePool& pool_;
  MigrateReport& r_;
  std::optional<Evaluator> ev_;
  std::vector<SiteInfo> infos_;
  std::vector<std::string> supported_;  // sites the target can run, in model order
  std::vector<Op> kinds_;               // their ops, in first-seen order
  bool all_pass_ = true;
  std::vector<std::string> base_, failing_, minimal_;
};

}  // namespace

MigrateReport migrate(const ModelFile& model, const MigrateOptions& o) {
  TAPML_REQUIRE(!o.target.empty(), "migrate: no target backend");
  TAPML_REQUIRE(!o.prompts.empty(), "migrate: no prompt");
  const std::set<std::string> strategies{"kinds", "layers", "bisect", "auto"};
  TAPML_REQUIRE(strategies.count(o.strategy),
                "migrate: unknown strategy '" + o.strategy + "' (kinds, layers, bisect, auto)");
  auto t0 = clock_type::now();
  DevicePool own;
  DevicePool& pool = o.pool ? *o.pool : own;
  // Opened first, so a bad target URI fails before any work.
  pool.open(o.target);
  pool.open(kNoiseReference);

  MigrateReport r;
  r.model = model.path;
  r.source = o.source;
  r.target = o.target;
  r.strategy = o.strategy;
  r.steps = o.steps;
  Migration m(model, o, pool, r);
  m.run();
  r.runs = m.runs();
  r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  return r;
}

}  // namespace tapml

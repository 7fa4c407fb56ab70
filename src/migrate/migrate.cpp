#include "migrate/migrate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include "backends/builtin.h"
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
  Evaluator(const ModelFile& model, const MigrateOptions& o) : model_(model), o_(o) {
    for (const auto& prompt : o.prompts) {
      sequences_.push_back(source_sequence(model, o.source, prompt, o.steps, o.stop_tokens));
      prompt_lens_.push_back(int(prompt.size()));
      TAPML_REQUIRE(sequences_.back().size() > prompt.size(),
                    "migrate: the source run produced no token after the prompt");
      sources_.push_back(
          run_trace(model, Placement(o.source), sequences_.back(), prompt_lens_.back(), false));
    }
  }

  EndToEnd evaluate(const Placement& p) {
    EndToEnd all;
    for (size_t i = 0; i < sequences_.size(); ++i)
      all.merge(
          compare_logits(sources_[i], run_trace(model_, p, sequences_[i], prompt_lens_[i], false)));
    ++runs_;
    return all;
  }
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

  // Calibrates the threshold from a plain-f32 run unless one was given.
  void calibrate(double given) {
    noise_ = evaluate(Placement("ref?acc=f32")).nmse;
    threshold_ = given > 0 ? given : std::max(o_.noise_multiple * noise_, 1e-14);
  }

  const std::vector<std::vector<int>>& sequences() const { return sequences_; }
  const std::vector<int>& prompt_lens() const { return prompt_lens_; }
  int runs() const { return runs_; }
  double threshold() const { return threshold_; }
  double noise() const { return noise_; }

 private:
  const ModelFile& model_;
  const MigrateOptions& o_;
  std::vector<std::vector<int>> sequences_;
  std::vector<int> prompt_lens_;
  std::vector<Trace> sources_;
  std::map<std::string, EndToEnd> cache_;
  int runs_ = 0;
  double threshold_ = 0, noise_ = 0;
};

std::string describe(const EndToEnd& e) {
  std::string s = "nmse " + fmt(e.nmse) + ", KL " + fmt(e.kl) + ", top-1 " +
                  std::to_string(e.top1_matching) + "/" + std::to_string(e.positions);
  if (!e.finite) s += ", non-finite logits";
  if (e.first_mismatch >= 0)
    s += ", first differing token at position " + std::to_string(e.first_mismatch);
  return s;
}

}  // namespace

MigrateReport migrate(const ModelFile& model, const MigrateOptions& o) {
  TAPML_REQUIRE(!o.target.empty(), "migrate: no target backend");
  TAPML_REQUIRE(!o.prompts.empty(), "migrate: no prompt");
  const std::set<std::string> strategies{"kinds", "layers", "bisect", "auto"};
  TAPML_REQUIRE(strategies.count(o.strategy),
                "migrate: unknown strategy '" + o.strategy + "' (kinds, layers, bisect, auto)");
  auto t0 = clock_type::now();
  // Opened first, so a bad target URI fails before any work.
  std::unique_ptr<Backend> target = open_backend(o.target), plain = open_backend("ref?acc=f32");
  auto say = [&](const std::string& line) {
    if (o.progress) o.progress(line);
  };

  MigrateReport r;
  r.model = model.path;
  r.source = o.source;
  r.target = o.target;
  r.strategy = o.strategy;
  r.steps = o.steps;

  say("running the source (" + o.source + ") and calibrating the end-to-end threshold");
  Evaluator ev(model, o);
  ev.calibrate(o.nmse_threshold);
  r.noise_nmse = ev.noise();
  r.nmse_threshold = ev.threshold();

  std::vector<SiteInfo> infos =
      list_sites(model, o.source, o.target, ev.sequences()[0], ev.prompt_lens()[0]);
  std::vector<std::string> supported;
  std::vector<Op> kinds;
  for (const SiteInfo& s : infos) {
    if (!s.target_supports) continue;
    supported.push_back(s.site);
    if (std::find(kinds.begin(), kinds.end(), s.op) == kinds.end()) kinds.push_back(s.op);
  }
  auto sites_where = [&](auto pred) {
    std::vector<std::string> out;
    for (const SiteInfo& s : infos)
      if (s.target_supports && pred(s)) out.push_back(s.site);
    return out;
  };
  auto op_of = [&](const std::string& site) {
    for (const SiteInfo& s : infos)
      if (s.site == site) return s.op;
    throw Error("internal: migrate: no site '" + site + "'");
  };

  // The cumulative steps of kinds / layers; the first failing one is returned.
  auto walk = [&](const std::vector<std::pair<std::string, std::vector<std::string>>>& groups,
                  std::vector<std::string>* base, std::vector<std::string>* failing) -> bool {
    std::vector<std::string> placed;
    for (const auto& [label, group] : groups) {
      std::vector<std::string> next = placed;
      next.insert(next.end(), group.begin(), group.end());
      auto ts = clock_type::now();
      EndToEnd e = ev.evaluate_sites(next);
      MigrationStep step{int(r.timeline.size()),
                         label,
                         next,
                         e,
                         ev.passes(e),
                         std::chrono::duration<double>(clock_type::now() - ts).count()};
      say("step " + std::to_string(step.step) + " " + label + " (" + std::to_string(next.size()) +
          " sites on the target): " + (step.pass ? "pass" : "FAIL") + ", " + describe(e));
      r.timeline.push_back(step);
      if (!step.pass) {
        *base = placed;
        *failing = group;
        return false;
      }
      placed = next;
    }
    return true;
  };

  std::vector<std::string> base, failing, minimal;
  bool all_pass = true;
  if (o.strategy == "kinds" || o.strategy == "auto") {
    std::vector<std::pair<std::string, std::vector<std::string>>> groups;
    for (Op k : kinds)
      groups.push_back({"kinds: " + std::string(op_name(k)),
                        sites_where([&](const SiteInfo& s) { return s.op == k; })});
    all_pass = walk(groups, &base, &failing);
  } else if (o.strategy == "layers") {
    // Layers in model order: what runs before the blocks, each block, what runs after.
    std::vector<std::pair<std::string, std::vector<std::string>>> groups;
    bool seen_block = false;
    for (const SiteInfo& s : infos) {
      if (!s.target_supports) continue;
      seen_block = seen_block || s.layer >= 0;
      std::string label = s.layer >= 0 ? "layers: blk." + std::to_string(s.layer)
                          : seen_block ? "layers: after the blocks"
                                       : "layers: before the blocks";
      if (groups.empty() || groups.back().first != label) groups.push_back({label, {}});
      groups.back().second.push_back(s.site);
    }
    all_pass = walk(groups, &base, &failing);
  } else {  // bisect
    all_pass = walk({{"all sites", supported}}, &base, &failing);
  }

  if (!all_pass && o.strategy != "kinds" && o.strategy != "layers") {
    say("bisecting " + std::to_string(failing.size()) + " sites");
    r.bisect_candidates = int(failing.size());
    int runs = 0;
    minimal = minimal_failing_set(
        failing,
        [&](const std::vector<std::string>& subset) {
          std::vector<std::string> placed = base;
          placed.insert(placed.end(), subset.begin(), subset.end());
          EndToEnd e = ev.evaluate_sites(placed);
          return !ev.passes(e);
        },
        &runs);
    r.bisect_runs = runs;
    r.bisect_culprits = minimal;
    say("bisection: " + join(minimal) + " after " + std::to_string(runs) + " end-to-end runs");
  }

  // Isolated comparison over every site, and the propagated error of each site with all
  // supported sites on the target.
  say("isolated comparison of every call on the target");
  IsolatedComparator iso(*target, *plain);
  std::vector<Trace> source_calls, target_calls;
  Placement all_target(o.source);
  all_target.add_sites(supported, o.target);
  for (size_t i = 0; i < ev.sequences().size(); ++i) {
    source_calls.push_back(
        run_trace(model, Placement(o.source), ev.sequences()[i], ev.prompt_lens()[i], true, &iso));
    target_calls.push_back(
        run_trace(model, all_target, ev.sequences()[i], ev.prompt_lens()[i], true));
  }
  std::map<std::string, const SiteLocal*> local;
  for (const SiteLocal& s : iso.sites()) local[s.site] = &s;
  std::map<std::string, double> propagated;
  for (size_t i = 0; i < source_calls.size(); ++i) {
    const auto& a = source_calls[i].calls;
    const auto& b = target_calls[i].calls;
    for (size_t c = 0; c < std::min(a.size(), b.size()); ++c) {
      if (a[c].first != b[c].first) break;  // the runs diverged in structure: stop comparing
      double worst = propagated[a[c].first];
      for (size_t k = 0; k < a[c].second.size(); ++k)
        worst = std::max(worst, measure(a[c].second[k], b[c].second[k], 0).error);
      propagated[a[c].first] = worst;
    }
  }
  for (const SiteInfo& s : infos) {
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
    if (auto it = propagated.find(s.site); it != propagated.end()) {
      at.propagated_error = it->second;
      at.propagated_measured = true;
    }
    r.sites.push_back(at);
  }
  auto attribution = [&](const std::string& site) -> const SiteAttribution* {
    for (const SiteAttribution& a : r.sites)
      if (a.info.site == site) return &a;
    return nullptr;
  };

  // The verdict.
  if (supported.empty()) {
    // Nothing could move, so nothing was shown to work: not a pass.
    r.status = "fail";
    r.summary = o.target + " supports none of the model's sites (see the coverage list)";
  } else if (all_pass) {
    r.status = "pass";
    r.summary = "every supported site runs on " + o.target + " with the output unchanged (" +
                describe(r.timeline.back().e2e) + " with all " + std::to_string(supported.size()) +
                " sites on the target)";
  } else {
    r.status = "fail";
    // Bisection gives a minimal set; kinds and layers give the failing group, narrowed to the
    // sites that fail in isolation (or the whole group when none does).
    std::vector<std::string> named = minimal;
    if (named.empty()) {
      for (const std::string& s : failing)
        if (const SiteAttribution* a = attribution(s); a && a->failed > 0) named.push_back(s);
      if (named.empty()) named = failing;
    }
    const MigrationStep& broke = r.timeline.back();
    for (const std::string& site : named) {
      const SiteAttribution* a = attribution(site);
      std::string evidence;
      if (a && a->failed > 0)
        evidence = "isolated: fails " + std::to_string(a->failed) + " of " +
                   std::to_string(a->calls) + " calls (" + a->local_check + ", worst " +
                   fmt(a->local_ratio) + "x tolerance)";
      else if (a && a->compared)
        evidence =
            "isolated: passes every call (worst " + fmt(a->local_ratio) +
            "x tolerance), so the error comes from state or from its interaction with other sites";
      evidence += "; end to end, step '" + broke.label + "': " + describe(broke.e2e);
      r.culprits.push_back({site, op_of(site), evidence});
      if (std::find(r.culprit_ops.begin(), r.culprit_ops.end(), op_of(site)) == r.culprit_ops.end())
        r.culprit_ops.push_back(op_of(site));
    }
    // A fault that hits every instance of an op: say so, naming the op.
    for (Op op : r.culprit_ops) {
      const std::string name(op_name(op));
      std::vector<std::string> all = sites_where([&](const SiteInfo& s) { return s.op == op; });
      size_t failing_alone = 0;
      for (const std::string& s : all)
        if (const SiteAttribution* a = attribution(s); a && a->failed > 0) ++failing_alone;
      std::string scope = failing_alone == all.size() && all.size() > 1
                              ? "every " + name + " site fails in isolation"
                              : std::to_string(failing_alone) + " of " +
                                    std::to_string(all.size()) + " " + name +
                                    " sites fail in isolation";
      r.summary += (r.summary.empty() ? "" : "; ") + name + " at " + join(named) +
                   " breaks the output (" + scope + ")";
    }
  }
  r.runs = ev.runs();
  r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  return r;
}

}  // namespace tapml

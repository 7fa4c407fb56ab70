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

std::vector<CauseGroup> group_by_cause(std::vector<Culprit>& named,
                                       const std::vector<SiteAttribution>& sites) {
  std::map<std::string, const SiteAttribution*> by_site;
  for (const SiteAttribution& a : sites) by_site[a.info.site.str()] = &a;
  // Each op's named sites, and the one weight type all their failed calls read (nullopt when
  // they read none, f32, or several).
  std::vector<Op> ops;
  std::map<Op, std::optional<DType>> reads;
  for (const Culprit& c : named) {
    const SiteAttribution* a = by_site.count(c.site) ? by_site.at(c.site) : nullptr;
    const bool one_type = a && a->failed > 0 && !a->failed_without_weight &&
                          a->failed_weight_dtypes.size() == 1 &&
                          a->failed_weight_dtypes[0] != DType::F32;
    std::optional<DType> type = one_type ? std::optional(a->failed_weight_dtypes[0]) : std::nullopt;
    if (std::find(ops.begin(), ops.end(), c.op) == ops.end()) {
      ops.push_back(c.op);
      reads[c.op] = type;
    } else if (reads[c.op] != type) {
      reads[c.op] = std::nullopt;
    }
  }
  std::map<DType, int> sharing;  // ops per weight type
  for (Op op : ops)
    if (reads[op]) sharing[*reads[op]]++;
  std::vector<CauseGroup> groups;
  std::map<Op, int> group_of;
  for (Op op : ops) {
    const std::optional<DType> type = reads[op];
    if (type && sharing[*type] > 1) {
      auto it = std::find_if(groups.begin(), groups.end(), [&](const CauseGroup& g) {
        return g.cause == "weight_dtype" && g.dtype == *type;
      });
      if (it == groups.end()) {
        groups.push_back({"", "weight_dtype", *type, {}, {}});
        it = groups.end() - 1;
      }
      it->ops.push_back(op);
      group_of[op] = int(it - groups.begin());
    } else {
      groups.push_back({std::string(op_name(op)), "op", DType::F32, {op}, {}});
      group_of[op] = int(groups.size()) - 1;
    }
  }
  for (CauseGroup& g : groups) {
    if (g.cause != "weight_dtype") continue;
    std::string names;
    for (Op op : g.ops) names += (names.empty() ? "" : ", ") + std::string(op_name(op));
    g.label = std::string(dtype_name(g.dtype)) + " weights (" + names + ")";
  }
  for (Culprit& c : named) {
    c.group = group_of[c.op];
    groups[size_t(c.group)].sites.push_back(c.site);
  }
  return groups;
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
      sequences_.push_back(
          source_sequence(model, pool, o.kv_cache, o.source, prompt, o.steps, o.stop_tokens));
      prompt_lens_.push_back(int(prompt.size()));
      TAPML_REQUIRE(sequences_.back().size() > prompt.size(),
                    "migrate: the source run produced no token after the prompt");
      sources_.push_back(run_trace(model, pool, o.kv_cache, Placement(o.source), sequences_.back(),
                                   prompt_lens_.back(), false));
    }
  }

  EndToEnd evaluate(const Placement& p) {
    EndToEnd all;
    int64_t before = 0;
    for (size_t i = 0; i < sequences_.size(); ++i) {
      all.merge(compare_logits(
          sources_[i], run_trace(model_, pool_, o_.kv_cache, p, sequences_[i], prompt_lens_[i],
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
  // A group whose step broke the output: what passed before it, its sites, and the minimal
  // failing set bisection found among them.
  struct FailedGroup {
    std::string label;
    std::vector<std::string> base, sites, minimal;
    int step = 0;
  };

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
    infos_ = list_sites(model_, pool_, o_.kv_cache, o_.source, o_.target, ev_->sequences()[0],
                        ev_->prompt_lens()[0]);
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

  // Moves the groups over one after another. A group that breaks the output is kept for
  // bisection with what passed before it; auto then goes on with that group left on the
  // source, so a second, independent culprit in a later group is found too; the other
  // strategies stop there and list the groups they did not run.
  void walk(const std::vector<Group>& groups) {
    const bool go_on = o_.strategy == "auto";
    std::vector<std::string> placed, kept_on_source;
    for (size_t g = 0; g < groups.size(); ++g) {
      const auto& [label, group] = groups[g];
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
                         std::chrono::duration<double>(clock_type::now() - ts).count(),
                         kept_on_source};
      say("step " + std::to_string(step.step) + " " + label + " (" + std::to_string(next.size()) +
          " sites on the target" +
          (kept_on_source.empty() ? "" : ", " + join(kept_on_source) + " kept on the source") +
          "): " + (step.pass ? "pass" : "FAIL") + ", " + describe(e));
      r_.timeline.push_back(step);
      if (step.pass) {
        placed = next;
        continue;
      }
      failed_.push_back({label, placed, group, {}, step.step});
      kept_on_source.push_back(label);
      if (go_on) continue;
      for (size_t rest = g + 1; rest < groups.size(); ++rest)
        r_.untested.push_back(groups[rest].first);
      return;
    }
  }

  // 4. Delta debugging inside each failing group (bisect, auto), with what passed before it
  // kept on the target: a minimal set of sites that still breaks the output.
  void bisect() {
    if (o_.strategy == "kinds" || o_.strategy == "layers") return;
    for (FailedGroup& f : failed_) {
      say("bisecting " + std::to_string(f.sites.size()) + " sites of " + f.label);
      int runs = 0;
      f.minimal = minimal_failing_set(
          f.sites,
          [&](const std::vector<std::string>& subset) {
            ev_->set_activity("bisection run " + std::to_string(runs) + ", " +
                              std::to_string(subset.size()) +
                              (subset.size() == 1 ? " site" : " sites"));
            std::vector<std::string> placed = f.base;
            placed.insert(placed.end(), subset.begin(), subset.end());
            return !ev_->passes(ev_->evaluate_sites(placed));
          },
          &runs);
      r_.bisections.push_back({f.label, int(f.sites.size()), runs, f.minimal});
      r_.bisect_runs += runs;
      r_.bisect_candidates += int(f.sites.size());
      r_.bisect_culprits.insert(r_.bisect_culprits.end(), f.minimal.begin(), f.minimal.end());
      say("bisection: " + join(f.minimal) + " after " + std::to_string(runs) + " end-to-end runs");
    }
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
      Trace a = run_trace(model_, pool_, o_.kv_cache, Placement(o_.source), seq, len, true, &iso,
                          ev_->positions(before));
      ev_->set_activity("propagated error, everything on the target");
      Trace b = run_trace(model_, pool_, o_.kv_cache, all_target, seq, len, true, nullptr,
                          ev_->positions(before));
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
        at.failed_weight_dtypes = l.failed_weight_dtypes;
        at.failed_without_weight = l.failed_without_weight;
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

  bool fails_alone(const std::string& site) const {
    const SiteAttribution* a = attribution(site);
    return a && a->failed > 0;
  }

  std::string isolated(const SiteAttribution& a) const {
    return "isolated: fails " + std::to_string(a.failed) + " of " + std::to_string(a.calls) +
           " calls (" + a.local_check +
           // NaN, Inf, guard and exactness failures have no finite ratio to quote.
           (std::isfinite(a.local_ratio) ? ", worst " + fmt(a.local_ratio) + "x tolerance"
                                         : std::string()) +
           ")";
  }

  // "rope at blk.2.rope_q, blk.2.rope_k (2 of 10 rope sites fail in isolation)": the named
  // sites of `op` among `named`, and how many of its sites fail alone.
  std::string op_scope(Op op, const std::vector<Culprit>& named) const {
    const std::string name(op_name(op));
    std::vector<std::string> all = supported_where([&](const SiteInfo& s) { return s.op == op; });
    size_t failing_alone = 0;
    for (const std::string& s : all) failing_alone += fails_alone(s);
    std::vector<std::string> at;
    for (const Culprit& c : named)
      if (c.op == op) at.push_back(c.site);
    std::string scope = failing_alone == all.size() && all.size() > 1
                            ? "every " + name + " site fails in isolation"
                            : std::to_string(failing_alone) + " of " + std::to_string(all.size()) +
                                  " " + name + " sites fail in isolation";
    return name + " at " + (at.size() > 6 ? std::to_string(at.size()) + " sites" : join(at)) +
           " (" + scope + ")";
  }

  // What the named sites of each group are, "rope at ... (scope)" or for a weight type "f16
  // weights in embedding at ... (...) and matmul at ... (...)", each with `verb` ("breaks
  // the output"; none for latent sites).
  std::string describe_groups(const std::vector<CauseGroup>& groups,
                              const std::vector<Culprit>& named, const std::string& verb) const {
    std::string out;
    for (const CauseGroup& g : groups) {
      std::vector<std::string> parts;
      for (Op op : g.ops) parts.push_back(op_scope(op, named));
      std::string piece;
      if (g.cause == "weight_dtype") {
        const std::string type(dtype_name(g.dtype));
        // "breaks the output" -> "break the output": the weights are plural.
        std::string plural = verb.rfind("breaks", 0) == 0 ? "break" + verb.substr(6) : verb;
        piece = type + " weights " + (plural.empty() ? "" : plural + " ") + "in " +
                join(parts, " and ") + ": every failing call reads " + type +
                " weights, so one cause is likely, how the ops read them";
      } else {
        piece = parts.front() + (verb.empty() ? "" : " " + verb);
      }
      out += (out.empty() ? "" : "; ") + piece;
    }
    return out;
  }

  // The first step that ran with `site` on the target and passed.
  const MigrationStep* passing_step_with(const std::string& site) const {
    for (const MigrationStep& s : r_.timeline)
      if (s.pass &&
          std::find(s.target_sites.begin(), s.target_sites.end(), site) != s.target_sites.end())
        return &s;
    return nullptr;
  }

  // What the end-to-end runs showed of a site that fails alone but is no culprit.
  std::string latent_evidence(const std::string& site) const {
    if (const MigrationStep* s = passing_step_with(site))
      return "the output passes with it on the target (step " + std::to_string(s->step) + " '" +
             s->label + "': " + describe(s->e2e) + ")";
    for (const FailedGroup& f : failed_)
      if (std::find(f.sites.begin(), f.sites.end(), site) != f.sites.end())
        return "not needed to break the output at step " + std::to_string(f.step) + " '" + f.label +
               "' (bisection: it breaks with " + join(f.minimal) + " alone)";
    return "not run end to end: the walk stopped at step " +
           std::to_string(failed_.empty() ? 0 : failed_.back().step) + " before its group";
  }

  // 6. The verdict: pass, or the culprit sites and ops with their evidence; then every other
  // site that fails in isolation, as latent.
  void judge() {
    if (supported_.empty()) {
      // Nothing could move, so nothing was shown to work: not a pass.
      r_.status = "fail";
      r_.summary = o_.target + " supports none of the model's sites (see the coverage list)";
      return;
    }
    std::vector<std::string> pieces, accumulating;
    for (const FailedGroup& f : failed_)
      if (!name_culprits(f))
        accumulating.push_back(join(f.minimal.empty() ? f.sites : f.minimal) + " (step '" +
                               f.label + "')");
    if (!accumulating.empty())
      pieces.push_back("the output breaks with " + join(accumulating, "; with ") + " on " +
                       o_.target +
                       ", but none of their calls fails in isolation: the error accumulates " +
                       "over many calls, or the threshold is too tight (NMSE threshold " +
                       fmt(r_.nmse_threshold) + ", a plain run (" + ev_->noise_reference() +
                       ") reaches " + fmt(r_.noise_nmse) + ")");
    r_.groups = group_by_cause(r_.culprits, r_.sites);
    for (const CauseGroup& g : r_.groups)
      for (Op op : g.ops)
        if (std::find(r_.culprit_ops.begin(), r_.culprit_ops.end(), op) == r_.culprit_ops.end())
          r_.culprit_ops.push_back(op);
    // Culprits of groups with a site that fails alone, by cause; the groups whose sites pass
    // alone said why in their own piece.
    std::vector<CauseGroup> failing_alone;
    for (const CauseGroup& g : r_.groups)
      if (std::any_of(g.sites.begin(), g.sites.end(),
                      [&](const std::string& s) { return fails_alone(s); }))
        failing_alone.push_back(g);
    if (!failing_alone.empty())
      pieces.insert(pieces.begin(),
                    describe_groups(failing_alone, r_.culprits, "breaks the output"));

    for (const SiteAttribution& a : r_.sites) {
      const std::string site = a.info.site.str();
      if (a.failed == 0 || std::any_of(r_.culprits.begin(), r_.culprits.end(),
                                       [&](const Culprit& c) { return c.site == site; }))
        continue;
      r_.latent.push_back({site, a.info.op, isolated(a) + "; " + latent_evidence(site)});
    }
    r_.latent_groups = group_by_cause(r_.latent, r_.sites);
    std::string latent;
    if (!r_.latent.empty()) {
      // Latent sites of a strategy that stopped early may never have run end to end.
      const bool all_ran = std::all_of(r_.latent.begin(), r_.latent.end(),
                                       [&](const Culprit& c) { return passing_step_with(c.site); });
      const bool one = r_.latent.size() == 1;
      latent = std::to_string(r_.latent.size()) + (one ? " site fails" : " sites fail") +
               " in isolation " +
               (all_ran ? "without breaking the output"
                : one   ? "but is not a culprit"
                        : "but are not culprits") +
               " (latent): " + describe_groups(r_.latent_groups, r_.latent, "");
    }

    if (failed_.empty()) {
      r_.status = "pass";
      const std::string full = describe(r_.timeline.back().e2e) + " with all " +
                               std::to_string(supported_.size()) + " sites on the target";
      r_.summary = latent.empty() ? "every supported site runs on " + o_.target +
                                        " with the output unchanged (" + full + ")"
                                  : "the output is unchanged with every supported site on " +
                                        o_.target + " (" + full + "), but " + latent;
      return;
    }
    r_.status = "fail";
    if (!latent.empty()) pieces.push_back(latent);
    if (!r_.untested.empty())
      pieces.push_back("not run end to end: " + join(r_.untested) +
                       " (this strategy stops at the first failing step; auto goes on)");
    r_.summary = join(pieces, "; ");
  }

  // Names the culprits of one group that broke the output. Bisection gives a minimal set;
  // kinds and layers give the failing group, narrowed to the sites that fail in isolation (or
  // the whole group when none does). Returns whether one of them fails alone.
  bool name_culprits(const FailedGroup& f) {
    std::vector<std::string> named = f.minimal;
    if (named.empty()) {
      for (const std::string& s : f.sites)
        if (fails_alone(s)) named.push_back(s);
      if (named.empty()) named = f.sites;
    }
    const MigrationStep& broke = r_.timeline[size_t(f.step)];
    auto add_culprit = [&](const std::string& site, std::string evidence) {
      if (std::any_of(r_.culprits.begin(), r_.culprits.end(),
                      [&](const Culprit& c) { return c.site == site; }))
        return;
      r_.culprits.push_back({site, info(site).op, std::move(evidence)});
    };
    bool any_fails_alone = false;
    std::vector<Op> ops;
    for (const std::string& site : named) {
      const SiteAttribution* a = attribution(site);
      std::string evidence;
      if (a && a->failed > 0) {
        evidence = isolated(*a);
        any_fails_alone = true;
      } else if (a && a->compared) {
        evidence =
            "isolated: passes every call (worst " + fmt(a->local_ratio) +
            "x tolerance), so the error comes from state or from its interaction with other sites";
      }
      evidence += "; end to end, step '" + broke.label + "': " + describe(broke.e2e);
      add_culprit(site, evidence);
      if (std::find(ops.begin(), ops.end(), info(site).op) == ops.end())
        ops.push_back(info(site).op);
    }
    if (!any_fails_alone) return false;
    // A fault at several sites: each site of the culprits' ops that fails in isolation is
    // named, though bisection needed only some of them to break the output.
    for (Op op : ops)
      for (const std::string& site : supported_where([&](const SiteInfo& s) { return s.op == op; }))
        if (fails_alone(site) && std::find(named.begin(), named.end(), site) == named.end())
          add_culprit(site, isolated(*attribution(site)) + "; the output breaks with " +
                                join(named) + " alone, and this site is wrong too");
    return true;
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
  std::vector<FailedGroup> failed_;
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
  r.kv_cache = dtype_name(o.kv_cache);
  Migration m(model, o, pool, r);
  m.run();
  r.runs = m.runs();
  r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
  return r;
}

}  // namespace tapml

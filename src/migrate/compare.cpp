#include "migrate/compare.h"

#include <algorithm>

#include "check/oracle.h"
#include "core/error.h"
#include "runtime/generate.h"
#include "runtime/session.h"

namespace tapml {

int64_t CompareReport::sites_compared() const {
  return std::count_if(sites.begin(), sites.end(),
                       [](const SiteLocal& s) { return s.compared() > 0; });
}
int64_t CompareReport::sites_failed() const {
  return std::count_if(sites.begin(), sites.end(), [](const SiteLocal& s) { return s.failed > 0; });
}
int64_t CompareReport::sites_not_comparable() const {
  return std::count_if(sites.begin(), sites.end(),
                       [](const SiteLocal& s) { return s.unsupported > 0; });
}

CompareReport compare_model(const ModelFile& model, const CompareOptions& o) {
  TAPML_REQUIRE(!o.target.empty(), "compare: no target backend");
  TAPML_REQUIRE(!o.prompts.empty(), "compare: no prompt");
  DevicePool own;
  DevicePool& pool = o.pool ? *o.pool : own;
  // Opened first: a mistyped URI is reported before any work.
  IsolatedComparator cmp(pool.open(o.target), pool.open(kNoiseReference), &pool);
  if (!o.site_regex.empty()) cmp.restrict_sites(o.site_regex);

  Session session(model, Placement(o.source), pool, std::max(model.config.max_seq_len, o.steps),
                  o.kv_cache);
  session.dispatcher().add_observer(&cmp);
  for (size_t i = 0; i < o.prompts.size(); ++i) {
    GenerateOptions g;
    g.steps = o.steps;
    g.stop_tokens = o.stop_tokens;
    int produced = 0;
    if (o.progress)
      g.on_token = [&](int) { o.progress(i, o.prompts.size(), ++produced, cmp.calls_compared()); };
    generate(session, o.prompts[i], g);
  }
  session.dispatcher().remove_observer(&cmp);

  CompareReport r;
  r.model = model.path;
  r.source = o.source;
  r.target = o.target;
  r.steps = o.steps;
  r.kv_cache = dtype_name(o.kv_cache);
  r.sites = cmp.sites();
  r.calls_compared = cmp.calls_compared();
  return r;
}

}  // namespace tapml

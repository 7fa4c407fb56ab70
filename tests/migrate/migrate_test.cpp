// Migration on stories260K: every fault is pinned to its site (or, when it hits every
// instance, its op), correct targets pass, and bisection stays within ~2 log2(sites) runs.
#include "migrate/migrate.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>

#include "backend/forwarding_backend.h"
#include "backend/registry.h"
#include "backends/builtin.h"
#include "core/error.h"
#include "core/hash.h"
#include "model/model_file.h"
#include "runtime/device_pool.h"
#include "support/running_server.h"
#include "support/shared.h"
#include "tokenizer/load.h"

namespace tapml {
namespace {

const ModelFile& stories() {
  static ModelFile m = load_model(testing::shared_path("models/stories260K/stories260K.gguf"));
  return m;
}

MigrateOptions options(const std::string& target, const std::string& strategy = "auto") {
  static Tokenizer tok = load_tokenizer("", stories().gguf.get(), stories().config.vocab_size);
  MigrateOptions o;
  o.target = target;
  o.strategy = strategy;
  o.steps = 40;
  o.prompts = {tok.encode("Once upon a time", true)};
  o.stop_tokens = {tok.vocab().eos};
  return o;
}

MigrateReport run(const std::string& target, const std::string& strategy = "auto") {
  return migrate(stories(), options(target, strategy));
}

bool names_site(const MigrateReport& r, const std::string& site) {
  return std::any_of(r.culprits.begin(), r.culprits.end(),
                     [&](const Culprit& c) { return c.site == site; });
}

struct Fault {
  std::string name;
  Op op;
  std::string site;  // a site where the fault shows
};
const std::vector<Fault> kFaults = {
    {"softmax_f16", Op::Attention, "blk.3.attn"},  {"rope_pairing", Op::Rope, "blk.2.rope_k"},
    {"gqa_map", Op::Attention, "blk.4.attn"},      {"kv_offset", Op::KvStore, "blk.1.kv_store"},
    {"matmul_tail", Op::Matmul, "blk.2.ffn_down"}, {"rmsnorm_eps", Op::RmsNorm, "blk.3.ffn_norm"},
    {"silu_approx", Op::Swiglu, "blk.1.ffn_act"},  {"exp_overflow", Op::Attention, "blk.0.attn"},
};

std::string escaped(const std::string& site) {
  std::string re = "^";
  for (char c : site) re += c == '.' ? std::string("\\.") : std::string(1, c);
  return re + "$";
}

TEST(Migrate, AFaultAtOneSiteIsPinnedToThatSite) {
  for (const Fault& f : kFaults) {
    MigrateReport r = run("faulty:cpu?fault=" + f.name + "&site=" + escaped(f.site));
    EXPECT_EQ(r.status, "fail") << f.name;
    ASSERT_EQ(r.culprits.size(), 1u) << f.name << ": " << r.summary;
    EXPECT_EQ(r.culprits[0].site, f.site) << f.name << ": " << r.summary;
    EXPECT_EQ(r.culprit_ops, std::vector<Op>{f.op}) << f.name;
  }
}

TEST(Migrate, AFaultEverywhereNamesItsOp) {
  for (const Fault& f : kFaults) {
    MigrateReport r = run("faulty:cpu?fault=" + f.name);
    EXPECT_EQ(r.status, "fail") << f.name;
    ASSERT_FALSE(r.culprit_ops.empty()) << f.name;
    // exp_overflow breaks attention and swiglu; the first kind moved is named.
    EXPECT_EQ(r.culprit_ops[0], f.op) << f.name << ": " << r.summary;
    EXPECT_NE(r.summary.find(std::string(op_name(f.op))), std::string::npos);
  }
}

TEST(Migrate, CorrectTargetsPassWithTheSourcesTokens) {
  for (const char* target :
       {"cpu", "cpu?threads=1", "faulty:cpu?fault=rope_pairing&site=^nowhere$"}) {
    MigrateReport r = run(target);
    EXPECT_EQ(r.status, "pass") << target << ": " << r.summary;
    EXPECT_TRUE(r.culprits.empty());
    const EndToEnd& full = r.timeline.back().e2e;
    EXPECT_EQ(full.top1_matching, full.positions) << target;
    EXPECT_EQ(r.timeline.back().target_sites.size(), r.sites.size());  // the full-target proof
    EXPECT_GT(r.nmse_threshold, 0);
  }
}

TEST(Migrate, BisectionNeedsAboutTwoLog2SitesRuns) {
  for (const Fault& f : {kFaults[1], kFaults[4], kFaults[6]}) {
    MigrateReport r = run("faulty:cpu?fault=" + f.name + "&site=" + escaped(f.site), "bisect");
    ASSERT_EQ(r.status, "fail");
    EXPECT_EQ(r.bisect_culprits, std::vector<std::string>{f.site}) << f.name;
    double budget = 2 * std::log2(double(r.bisect_candidates)) + 4;
    EXPECT_LE(r.bisect_runs, budget) << f.name << " over " << r.bisect_candidates << " sites";
    EXPECT_GT(r.bisect_runs, 0);
  }
}

TEST(Migrate, KindsAndLayersNameTheFailingStep) {
  MigrateReport kinds =
      run("faulty:cpu?fault=rope_pairing&site=" + escaped("blk.2.rope_q"), "kinds");
  ASSERT_EQ(kinds.status, "fail");
  EXPECT_EQ(kinds.timeline.back().label, "kinds: rope");
  EXPECT_TRUE(names_site(kinds, "blk.2.rope_q")) << kinds.summary;
  MigrateReport layers =
      run("faulty:cpu?fault=rope_pairing&site=" + escaped("blk.2.rope_q"), "layers");
  ASSERT_EQ(layers.status, "fail");
  EXPECT_EQ(layers.timeline.back().label, "layers: blk.2");
  EXPECT_TRUE(names_site(layers, "blk.2.rope_q")) << layers.summary;
}

TEST(Migrate, AttributionSeparatesLocalFromPropagatedError) {
  MigrateReport r = run("faulty:cpu?fault=matmul_tail&site=" + escaped("blk.1.ffn_down"));
  const SiteAttribution* culprit = nullptr;
  const SiteAttribution* downstream = nullptr;
  for (const SiteAttribution& a : r.sites) {
    if (a.info.site.str() == "blk.1.ffn_down") culprit = &a;
    if (a.info.site.str() == "blk.3.attn_q") downstream = &a;
  }
  ASSERT_TRUE(culprit && downstream);
  EXPECT_GT(culprit->failed, 0);                                           // wrong alone
  EXPECT_EQ(downstream->failed, 0);                                        // correct alone...
  EXPECT_GT(downstream->propagated_error, 100 * downstream->local_error);  // ...but inherits error
}

// A backend that can run nothing: every site is "not comparable".
class RefusesEverything final : public ForwardingBackend {
 public:
  RefusesEverything() : ForwardingBackend(open_backend("cpu")) {}
  Support supports(const OpCall& c) const override {
    return Support::no("no kernel for " + std::string(op_name(c.op)));
  }
  void run(const OpCall&) override { throw Error("cannot run"); }
};

TEST(Migrate, ATargetThatRunsNothingIsNotAPass) {
  register_backend("nothing", "test",
                   [](const BackendUri&) { return std::make_unique<RefusesEverything>(); });
  MigrateReport r = run("nothing");
  EXPECT_EQ(r.status, "fail");
  EXPECT_TRUE(r.culprits.empty());
  EXPECT_NE(r.summary.find("supports none"), std::string::npos) << r.summary;
  for (const SiteAttribution& a : r.sites) EXPECT_FALSE(a.info.target_supports) << a.info.site;
}

TEST(Migrate, MinimalFailingSetFindsOneCulpritInLogarithmicRuns) {
  std::vector<std::string> sites;
  for (int i = 0; i < 128; ++i) sites.push_back("s" + std::to_string(i));
  int runs = 0;
  auto found = minimal_failing_set(
      sites,
      [](const std::vector<std::string>& s) { return std::count(s.begin(), s.end(), "s77") > 0; },
      &runs);
  EXPECT_EQ(found, std::vector<std::string>{"s77"});
  EXPECT_LE(runs, 2 * 7 + 2);
  // Two sites needed together.
  runs = 0;
  found = minimal_failing_set(
      sites,
      [](const std::vector<std::string>& s) {
        return std::count(s.begin(), s.end(), "s3") && std::count(s.begin(), s.end(), "s100");
      },
      &runs);
  std::sort(found.begin(), found.end());
  EXPECT_EQ(found, (std::vector<std::string>{"s100", "s3"}));
}

TEST(Migrate, ACulpritThatFailsNothingAloneIsCalledAccumulatedError) {
  MigrateOptions o = options("cpu");
  o.nmse_threshold = 1e-20;  // far below what any correct f32 run reaches
  MigrateReport r = migrate(stories(), o);
  EXPECT_EQ(r.status, "fail");
  EXPECT_NE(r.summary.find("none of their calls fails in isolation: the error accumulates"),
            std::string::npos)
      << r.summary;
  EXPECT_NE(r.summary.find("threshold is too tight"), std::string::npos) << r.summary;
}

TEST(Migrate, AFaultAtSeveralSitesNamesEveryFailingSite) {
  MigrateReport r = run("faulty:cpu?fault=rope_pairing&site=^blk\\.2\\.");
  EXPECT_EQ(r.status, "fail");
  EXPECT_TRUE(names_site(r, "blk.2.rope_q")) << r.summary;
  EXPECT_TRUE(names_site(r, "blk.2.rope_k")) << r.summary;
  EXPECT_EQ(r.culprits.size(), 2u) << r.summary;
  EXPECT_NE(r.summary.find("2 of 10 rope sites fail in isolation"), std::string::npos) << r.summary;
}

// A device that counts how often each content was written into it.
class WriteCounter final : public ForwardingBackend {
 public:
  explicit WriteCounter(std::unique_ptr<Backend> inner) : ForwardingBackend(std::move(inner)) {}
  void write(BufferId id, size_t offset, const void* src, size_t bytes) override {
    {
      std::lock_guard lock(mutex_);
      ++writes_[content_hash(src, bytes)];
    }
    ForwardingBackend::write(id, offset, src, bytes);
  }
  int count(const std::string& hash) const {
    std::lock_guard lock(mutex_);
    auto it = writes_.find(hash);
    return it == writes_.end() ? 0 : it->second;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, int> writes_;
};

TEST(Migrate, OverTcpOpensTheDeviceOnceAndSendsEachWeightOnce) {
  auto device = std::make_unique<WriteCounter>(open_backend("cpu?threads=1"));
  const WriteCounter& writes = *device;
  testing::RunningServer server(std::move(device));
  DevicePool pool;
  MigrateOptions o = options(server.uri());
  o.steps = 24;
  o.pool = &pool;
  MigrateReport r = migrate(stories(), o);
  EXPECT_EQ(r.status, "pass") << r.summary;
  EXPECT_GE(r.runs, 8);  // many end-to-end runs and an isolated comparison of every call...
  EXPECT_EQ(server.server().stats().connections, 1u);  // ...over one connection
  DeviceCounters c = pool.counters(server.uri());
  EXPECT_EQ(c.opens, 1);
  EXPECT_EQ(c.weight_uploads, int64_t(stories().weights.size()));
  // Each weight's bytes reached the device once (as often as the model holds that content),
  // neither re-sent nor restored from the server's hash cache by later runs.
  std::map<std::string, int> held;
  for (const auto& [name, t] : stories().weights) ++held[content_hash(t.bytes(), t.nbytes())];
  for (const auto& [name, t] : stories().weights) {
    std::string h = content_hash(t.bytes(), t.nbytes());
    EXPECT_EQ(writes.count(h), held[h]) << name;
  }
}

}  // namespace
}  // namespace tapml

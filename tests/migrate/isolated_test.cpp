// Isolated comparison on stories260K: a correct target passes every site, and an injected
// fault fails exactly the sites it touches, never the ones downstream of them (each target
// call starts from the source's inputs). Ops the target refuses are listed, not failed.
#include "migrate/isolated.h"

#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <set>

#include "backend/forwarding_backend.h"
#include "backends/builtin.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/errors.h"
#include "support/shared.h"

namespace tapml {
namespace {

const ModelFile& stories() {
  static ModelFile m = load_model(testing::shared_path("models/stories260K/stories260K.gguf"));
  return m;
}

// Runs 16 positions from BOS on ref with the comparator attached.
std::vector<SiteLocal> compare_on(Backend& target, const std::string& site_filter = "",
                                  int64_t* compared = nullptr) {
  std::unique_ptr<Backend> plain = open_backend("ref?acc=f32");
  IsolatedComparator cmp(target, *plain);
  if (!site_filter.empty()) cmp.restrict_sites(site_filter);
  Session s(stories(), Placement("ref"), 16);
  s.dispatcher().add_observer(&cmp);
  GenerateOptions o;
  o.steps = 16;
  generate(s, {1}, o);
  s.dispatcher().remove_observer(&cmp);
  if (compared) *compared = cmp.calls_compared();
  return cmp.sites();
}

std::vector<SiteLocal> compare_on(const std::string& uri) {
  std::unique_ptr<Backend> target = open_backend(uri);
  return compare_on(*target);
}

std::set<std::string> failing(const std::vector<SiteLocal>& sites) {
  std::set<std::string> out;
  for (const SiteLocal& s : sites)
    if (s.failed) out.insert(s.site.str());
  return out;
}

std::set<std::string> matching(const std::vector<SiteLocal>& sites, const std::string& re) {
  std::set<std::string> out;
  for (const SiteLocal& s : sites)
    if (std::regex_search(s.site.str(), std::regex(re))) out.insert(s.site.str());
  return out;
}

TEST(Isolated, CorrectTargetPassesEverySite) {
  int64_t compared = 0;
  std::unique_ptr<Backend> cpu = open_backend("cpu");
  std::vector<SiteLocal> sites = compare_on(*cpu, "", &compared);
  // 5 layers x 16 sites + token_embd, output_norm, output.
  EXPECT_EQ(sites.size(), 5u * 16 + 3);
  EXPECT_EQ(sites.front().site.str(), "token_embd");
  EXPECT_EQ(sites.back().site.str(), "output");
  int64_t calls = 0;
  for (const SiteLocal& s : sites) {
    EXPECT_TRUE(s.pass()) << s.site << ": " << s.worst_detail;
    EXPECT_LE(s.worst_ratio, 1) << s.site;
    EXPECT_EQ(s.calls, 16) << s.site;  // one prefill of BOS, 15 decode steps
    calls += s.calls;
  }
  EXPECT_EQ(compared, calls);
  for (const SiteLocal& s : sites) {
    if (s.site.str() != "blk.2.attn_q") continue;
    EXPECT_EQ(s.site.layer, 2);
    EXPECT_EQ(s.op, Op::Matmul);
  }
}

TEST(Isolated, RopeFaultFailsOnlyItsSite) {
  std::vector<SiteLocal> sites = compare_on("faulty:cpu?fault=rope_pairing&site=blk\\.2\\.rope_q");
  EXPECT_EQ(failing(sites), std::set<std::string>{"blk.2.rope_q"});
  for (const SiteLocal& s : sites) {
    if (s.site.str() != "blk.2.rope_q") continue;
    EXPECT_EQ(s.worst_check, CheckKind::Numeric);
    EXPECT_GT(s.worst_ratio, 1);
    EXPECT_GT(s.worst_error, 0);
    EXPECT_FALSE(s.worst_detail.empty());
    // Position 0 rotates by nothing, so the prefill of BOS passes: 15 decode calls fail.
    EXPECT_EQ(s.failed, 15);
  }
}

TEST(Isolated, MatmulTailFailsExactlyTheFfnDownSites) {
  // K = 172 (the ffn hidden size) is the only reduction length not a multiple of 8.
  std::vector<SiteLocal> sites = compare_on("faulty:cpu?fault=matmul_tail");
  EXPECT_EQ(failing(sites), matching(sites, "ffn_down$"));
  EXPECT_EQ(failing(sites).size(), 5u);
}

TEST(Isolated, KvOffsetFailsOnlyTheKvStoreSites) {
  std::vector<SiteLocal> sites = compare_on("faulty:cpu?fault=kv_offset");
  EXPECT_EQ(failing(sites), matching(sites, "kv_store$"));
  EXPECT_EQ(failing(sites).size(), 5u);
  for (const SiteLocal& s : sites) {
    if (!s.failed) continue;
    EXPECT_EQ(s.worst_check, CheckKind::Exact) << s.site << ": " << s.worst_detail;
  }
}

// A device without an attention kernel: every other op runs on cpu.
class NoAttentionBackend final : public ForwardingBackend {
 public:
  NoAttentionBackend() : ForwardingBackend(open_backend("cpu")), info_(inner().info()) {
    info_.uri = info_.name = "no-attention";
  }
  const BackendInfo& info() const override { return info_; }
  Support supports(const OpCall& call) const override {
    if (call.op == Op::Attention) return Support::no("no attention kernel on this device");
    return inner().supports(call);
  }

 private:
  BackendInfo info_;
};

TEST(Isolated, UnsupportedOpsAreListedNotFailed) {
  NoAttentionBackend target;
  int64_t compared = 0;
  std::vector<SiteLocal> sites = compare_on(target, "", &compared);
  EXPECT_TRUE(failing(sites).empty());
  std::set<std::string> unsupported;
  int64_t calls = 0;
  for (const SiteLocal& s : sites) {
    calls += s.calls;
    if (!s.unsupported) continue;
    unsupported.insert(s.site.str());
    EXPECT_EQ(s.op, Op::Attention);
    EXPECT_EQ(s.unsupported, s.calls);
    EXPECT_EQ(s.failed, 0);
    EXPECT_FALSE(s.pass());
    EXPECT_EQ(s.unsupported_reason, "no attention kernel on this device");
  }
  EXPECT_EQ(unsupported, matching(sites, "\\.attn$"));
  EXPECT_EQ(unsupported.size(), 5u);
  EXPECT_EQ(compared, calls - 5 * 16);
}

TEST(Isolated, RestrictSitesComparesOnlyMatchingSites) {
  std::unique_ptr<Backend> target = open_backend("faulty:cpu?fault=matmul_tail");
  std::vector<SiteLocal> sites = compare_on(*target, "^blk\\.1\\.");
  ASSERT_EQ(sites.size(), 16u);
  for (const SiteLocal& s : sites) EXPECT_EQ(s.site.layer, 1) << s.site;
  EXPECT_EQ(failing(sites), std::set<std::string>{"blk.1.ffn_down"});

  std::unique_ptr<Backend> plain = open_backend("ref?acc=f32");
  IsolatedComparator cmp(*target, *plain);
  EXPECT_TRUE(testing::contains(testing::error_of([&] { cmp.restrict_sites("(("); }),
                                "not a valid regular expression"));
}

}  // namespace
}  // namespace tapml

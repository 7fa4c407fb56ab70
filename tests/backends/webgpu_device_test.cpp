// The WebGPU device (web/: JS + WGSL) end to end, in headless Chromium and under Node (Dawn),
// both on SwiftShader here: a corpus carved from stories260K replays completely, a run gives
// llama2.c's tokens, migration passes and pins a fault, a device that dies mid-replay is an
// error within seconds, a call over the device's binding limit is refused and reported as
// coverage, and the page shows the device and its counters. Skipped where the runner is not
// installed (no Chromium, or web/node_modules missing).
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include "backend/registry.h"
#include "backends/builtin.h"
#include "migrate/migrate.h"
#include "model/model_file.h"
#include "replay/replay.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/carve.h"
#include "support/golden.h"
#include "support/shared.h"
#include "support/stories.h"
#include "support/web_device.h"
#include "tokenizer/load.h"

namespace tapml {
namespace {

using testing::stories;
using testing::stories_tokenizer;

class WebGpuDevice : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    register_builtin_backends();
    if (std::string why = testing::web_runner_unavailable(GetParam()); !why.empty())
      GTEST_SKIP() << why;
  }
};

TEST_P(WebGpuDevice, CarvedStoriesCorpusReplaysCompletely) {
  testing::WebDevice dev(GetParam());
  testing::expect_stories_corpus_replays(dev.uri(),
                                         testing::temp_dir() + "/webgpu_" + GetParam() + ".db");
}

TEST_P(WebGpuDevice, RunGivesTheGoldenTokens) {
  testing::WebDevice dev(GetParam());
  Session session(stories(), Placement(dev.uri()), 512);
  for (const testing::Golden& g : testing::stories_goldens()) {
    if (g.steps > 128) continue;  // the one of 128 steps: SwiftShader is a CPU
    GenerateOptions o;
    o.steps = g.steps;
    o.stop_tokens = {stories_tokenizer().vocab().eos, stories_tokenizer().vocab().bos};
    GenerateResult r = generate(session, stories_tokenizer().encode(g.prompt, true), o);
    EXPECT_EQ(r.token_ids, g.token_ids) << g.file;
  }
}

TEST_P(WebGpuDevice, MigrationPassesAndPinsAFault) {
  testing::WebDevice dev(GetParam());
  testing::expect_stories_migration_pins_a_fault(dev.uri(), 16);
}

// A device that dies in the middle of a replay (the tab closed, the browser killed) fails the
// tests after it within seconds, with the reason, and the replay ends.
TEST_P(WebGpuDevice, ADeviceKilledMidReplayIsAnErrorWithinSeconds) {
  const std::string path = testing::temp_dir() + "/webgpu_kill_" + GetParam() + ".db";
  testing::carve_on_ref(stories(), path, stories_tokenizer().encode("Once", true), 6);
  testing::WebDevice dev(GetParam());
  std::chrono::steady_clock::time_point killed;
  ReplayOptions o;
  o.on_result = [&](size_t done, size_t, const TestResult&) {
    if (done == 3) {
      dev.kill();
      killed = std::chrono::steady_clock::now();
    }
  };
  ReplayRun run = replay_corpus(path, dev.uri(), o);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
  EXPECT_LT(seconds, 10.0);
  ASSERT_GT(run.results.size(), 4u);
  const TestResult& after = run.results[4];
  EXPECT_FALSE(after.pass);
  EXPECT_NE(after.error.find("went away"), std::string::npos) << after.error;
}

// With the device held to a 64 KiB binding limit, stories260K's 128 KiB token table and
// output matrix cannot be bound: SUPPORTS says so, and migration reports those sites as
// staying on the source (coverage), with everything else on the device, and passes.
TEST_P(WebGpuDevice, CallsOverTheBindingLimitAreRefusedAndReportedAsCoverage) {
  testing::WebDevice dev(GetParam(), {"maxStorageBufferBindingSize:65536"});
  std::unique_ptr<Backend> b = make_backend(dev.uri());
  OpCall big{Op::Matmul,
             {},
             {{1, 0, DType::F32, Shape{1, 64}}, {2, 0, DType::F32, Shape{512, 64}}},
             {{3, 0, DType::F32, Shape{1, 512}}},
             "output"};
  Support s = b->supports(big);
  EXPECT_FALSE(s.ok);
  EXPECT_NE(s.reason.find("maxStorageBufferBindingSize 65536"), std::string::npos) << s.reason;
  b.reset();

  MigrateReport r = migrate(stories(), testing::stories_migrate_options(dev.uri(), 12));
  EXPECT_EQ(r.status, "pass") << r.summary;
  int refused = 0, offered = 0;
  for (const SiteAttribution& site : r.sites) {
    if (site.info.target_supports) {
      ++offered;
      continue;
    }
    ++refused;
    EXPECT_TRUE(site.info.op == Op::Embedding || site.info.op == Op::Matmul)
        << op_name(site.info.op);
    EXPECT_NE(site.info.unsupported_reason.find("maxStorageBufferBindingSize"), std::string::npos)
        << site.info.unsupported_reason;
  }
  EXPECT_EQ(refused, 2);
  EXPECT_GT(offered, 30);
}

INSTANTIATE_TEST_SUITE_P(Runners, WebGpuDevice, ::testing::Values("node", "chromium"),
                         [](const auto& info) { return info.param; });

// The page shows the adapter, the connection and live counters; the test saves a screenshot
// (webgpu_device_page.png in the tests' temporary folder, path printed) and reads the page's
// text.
TEST(WebGpuPage, ShowsTheDeviceAndLiveCounters) {
  register_builtin_backends();
  if (std::string why = testing::web_runner_unavailable("chromium"); !why.empty())
    GTEST_SKIP() << why;
  testing::WebDevice dev("chromium", {"", true});
  {
    Session session(stories(), Placement(dev.uri()), 64);
    GenerateOptions o;
    o.steps = 8;
    generate(session, stories_tokenizer().encode("Once upon a time", true), o);
  }
  const int port = dev.devtools_port();
  std::string text;
  for (int i = 0; i < 50; ++i) {  // the page repaints on the next animation frame
    text = testing::devtools_evaluate(port, "document.body.innerText");
    if (text.find("session ended") != std::string::npos || text.find("runs") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(text.find("swiftshader"), std::string::npos) << text;
  const std::string runs =
      testing::devtools_evaluate(port, "window.tapmlDevice.device.counters.runs");
  EXPECT_GT(std::stol(runs), 100) << text;
  EXPECT_EQ(testing::devtools_evaluate(port, "document.getElementById('runs').textContent"),
            testing::devtools_evaluate(
                port, "window.tapmlDevice.device.counters.runs.toLocaleString('en-US')"));
  const std::string png = testing::devtools_screenshot_png(port);
  ASSERT_GT(png.size(), 2000u);
  EXPECT_EQ(png.substr(1, 3), "PNG");
  const std::string shot = testing::temp_dir() + "/webgpu_device_page.png";
  std::ofstream(shot, std::ios::binary) << png;
  std::cout << "screenshot of the page: " << shot << "\n";
}

}  // namespace
}  // namespace tapml

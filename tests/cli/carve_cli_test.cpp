// tapml carve and tapml test end to end on stories260K: a correct backend passes every
// carved test, every injected fault fails tests of the op it breaks, and damaged corpora
// give clear errors.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/golden.h"
#include "support/shared.h"

namespace tapml {
namespace {

using testing::run_command;
using testing::shared_path;
using testing::shell_quote;

std::string tapml(const std::string& args) { return testing::tapml_command(args); }
std::string q(const std::string& s) { return shell_quote(s); }

uintmax_t file_size_or_zero(const std::string& p) {
  std::error_code ec;
  uintmax_t n = std::filesystem::file_size(p, ec);
  return ec ? 0 : n;
}

// The three golden prompts, 64 positions each, carved once per test process.
const std::string& stories_corpus() {
  static std::string path = [] {
    std::string p = testing::temp_dir() + "/stories.corpus";
    std::string prompts;
    for (const auto& g : testing::stories_goldens()) prompts += " --prompt " + q(g.prompt);
    auto r =
        run_command(tapml("carve --model " + q(shared_path("models/stories260K/stories260K.bin")) +
                          " --tokenizer " + q(shared_path("models/stories260K/tok512.bin")) +
                          prompts + " --steps 64 --out " + q(p) + " --json"));
    if (r.exit_code != 0) throw std::runtime_error("carve failed: " + r.err);
    return p;
  }();
  return path;
}

nlohmann::json run_test_json(const std::string& backend, const std::string& extra = "",
                             int* exit_code = nullptr) {
  std::string report = testing::temp_dir() + "/report.json";
  auto r = run_command(tapml("test --corpus " + q(stories_corpus()) + " --backend " + q(backend) +
                             " --json " + q(report) + " " + extra));
  if (exit_code) *exit_code = r.exit_code;
  std::ifstream f(report);
  if (!f) throw std::runtime_error("no report: " + r.err + r.out);
  return nlohmann::json::parse(f);
}

TEST(CarveCli, ReportsCallsSeenAndTestsKept) {
  std::string p = testing::temp_dir() + "/summary.corpus";
  auto r =
      run_command(tapml("carve --model " + q(shared_path("models/stories260K/stories260K.gguf")) +
                        " --prompt 'Once upon a time' --steps 24 --out " + q(p)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("calls seen"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tests kept"), std::string::npos) << r.out;
  // A second carve to the same path refuses to clobber it.
  r = run_command(tapml("carve --model " + q(shared_path("models/stories260K/stories260K.gguf")) +
                        " --prompt 'x' --steps 8 --out " + q(p)));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--overwrite"), std::string::npos) << r.err;
}

// --kv-cache f16 carves the half-precision cache's kv_store and attention calls: the corpus
// says so, cpu passes them, and a backend without f16 cache kernels refuses exactly those.
TEST(CarveCli, AnF16KvCacheCarvesHalfCacheTests) {
  const std::string p = testing::temp_dir() + "/stories-f16-cache.corpus";
  auto r =
      run_command(tapml("carve --model " + q(shared_path("models/stories260K/stories260K.bin")) +
                        " --tokenizer " + q(shared_path("models/stories260K/tok512.bin")) +
                        " --prompt 'Once upon a time' --steps 24 --kv-cache f16 --out " + q(p)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto info = run_command(tapml("corpus info --corpus " + q(p)));
  EXPECT_NE(info.out.find("kv_cache: f16"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("q:f32 k:f16 v:f16"), std::string::npos) << info.out;
  auto cpu = run_command(tapml("test --corpus " + q(p) + " --backend cpu"));
  EXPECT_EQ(cpu.exit_code, 0) << cpu.out << cpu.err;
  EXPECT_NE(cpu.out.find(" 0 failed"), std::string::npos) << cpu.out;
  // The faulty backend's kv_offset stores keys one row off: its kv_store tests fail.
  auto bad =
      run_command(tapml("test --corpus " + q(p) + " --backend 'faulty:cpu?fault=kv_offset'"));
  EXPECT_EQ(bad.exit_code, 1) << bad.out << bad.err;
}

TEST(CarveCli, CorrectBackendsPassEveryTest) {
  for (const char* backend : {"ref", "cpu"}) {
    int rc = -1;
    nlohmann::json j = run_test_json(backend, "", &rc);
    EXPECT_EQ(rc, 0) << backend;
    EXPECT_GT(j["summary"]["tests"].get<int>(), 50);
    EXPECT_EQ(j["summary"]["failed"], 0) << backend << ": " << j["summary"].dump();
  }
}

TEST(CarveCli, SyntheticTestsPassOnCorrectBackends) {
  for (const char* backend : {"ref", "cpu"}) {
    int rc = -1;
    nlohmann::json j = run_test_json(backend, "--synthetic", &rc);
    EXPECT_EQ(rc, 0) << backend;
    EXPECT_EQ(j["summary"]["failed"], 0) << backend << ": " << j["summary"].dump();
  }
}

TEST(CarveCli, ShardsCoverTheCorpusOnceAndMerge) {
  std::string dir = testing::temp_dir();
  int64_t total = 0;
  std::string merge;
  for (int k = 1; k <= 3; ++k) {
    std::string out = dir + "/s" + std::to_string(k) + ".json";
    auto r = run_command(tapml("test --corpus " + q(stories_corpus()) + " --backend cpu --shard " +
                               std::to_string(k) + "/3 --json " + q(out)));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::ifstream f(out);
    total += nlohmann::json::parse(f)["summary"]["tests"].get<int64_t>();
    merge += " " + q(out);
  }
  nlohmann::json all = run_test_json("cpu");
  EXPECT_EQ(total, all["summary"]["tests"].get<int64_t>());
  std::string junit = dir + "/merged.xml";
  auto r = run_command(tapml("test --merge" + merge + " --junit " + q(junit)));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(std::to_string(total) + " passed, 0 failed"), std::string::npos) << r.out;
  std::ifstream x(junit);
  std::string xml((std::istreambuf_iterator<char>(x)), std::istreambuf_iterator<char>());
  EXPECT_NE(xml.find("<testsuite name=\"matmul\""), std::string::npos);
}

// Per fault: carved (realistic) and synthetic inputs, failing tests and the checks that
// failed them. Carved inputs must catch every fault, and only in tests of the op it breaks.
TEST(CarveCli, EveryFaultFailsTestsOfTheOpItBreaks) {
  const std::map<std::string, std::string> fault_op = {
      {"softmax_f16", "attention"}, {"rope_pairing", "rope"},
      {"gqa_map", "attention"},     {"kv_offset", "kv_store"},
      {"matmul_tail", "matmul"},    {"rmsnorm_eps", "rmsnorm"},
      {"silu_approx", "swiglu"},    {"exp_overflow", "attention|swiglu"}};
  std::string table = "fault          carved: failed (checks)       synthetic: failed (checks)\n";
  for (const auto& [fault, op] : fault_op) {
    table += fault + std::string(15 - fault.size(), ' ');
    for (bool synthetic : {false, true}) {
      int rc = -1;
      nlohmann::json j =
          run_test_json("faulty:cpu?fault=" + fault, synthetic ? "--synthetic" : "", &rc);
      std::map<std::string, int> checks;
      int failed = 0;
      for (const auto& t : j["tests"]) {
        if (t["pass"]) continue;
        ++failed;
        checks[t["check"].get<std::string>()]++;
        EXPECT_NE(op.find(t["op"].get<std::string>()), std::string::npos)
            << fault << " failed a test of " << t["op"] << ": " << t["detail"];
      }
      if (!synthetic) {
        EXPECT_EQ(rc, 1) << fault;
        EXPECT_GT(failed, 0) << fault;
      }
      std::string cell = std::to_string(failed) + " (";
      for (auto& [check, n] : checks) cell += check + " " + std::to_string(n) + " ";
      cell += ")";
      table += cell + std::string(cell.size() < 30 ? 30 - cell.size() : 1, ' ');
    }
    table += "\n";
  }
  std::printf("%s", table.c_str());
}

TEST(CarveCli, FailuresPrintAOneLineReplayCommand) {
  auto r = run_command(tapml("test --corpus " + q(stories_corpus()) +
                             " --backend 'faulty:cpu?fault=rope_pairing' --fail-fast"));
  EXPECT_EQ(r.exit_code, 1);
  size_t at = r.out.find("replay: tapml test --corpus");
  ASSERT_NE(at, std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--id ", at), std::string::npos);
  EXPECT_NE(r.out.find("0 passed, 1 failed"), std::string::npos) << r.out;
}

TEST(CarveCli, AKilledCarveLosesNothingAndLeavesAPartialCorpus) {
  std::string p = testing::temp_dir() + "/killed.corpus";
  std::string partial = p + ".partial";
  std::string cmd = testing::tapml_binary();
  std::string model = shared_path("models/stories260K/stories260K.gguf");
  // An earlier, finished corpus at the path that the killed carve was to replace.
  auto first =
      run_command(tapml("carve --model " + q(model) + " --prompt '' --steps 6 --out " + q(p)));
  ASSERT_EQ(first.exit_code, 0) << first.err;
  auto before = run_command(tapml("corpus info --corpus " + q(p) + " --json"));
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    execl(cmd.c_str(), cmd.c_str(), "carve", "--model", model.c_str(), "--prompt",
          "Once upon a time", "--prompt", "Lily and Tom", "--prompt", "The dog", "--steps", "512",
          "--keep", "8", "--overwrite", "--out", p.c_str(), (char*)nullptr);
    _exit(127);
  }
  // Kill it once its new corpus holds some tests, well before the carve can finish.
  for (int i = 0;
       i < 2000 && file_size_or_zero(partial) + file_size_or_zero(partial + "-wal") < 200000; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the carve finished before it could be killed";
  // The old corpus is untouched...
  EXPECT_EQ(run_command(tapml("corpus info --corpus " + q(p) + " --json")).out, before.out);
  // ...and what the killed carve stored is kept, marked unfinished: it replays only when asked.
  auto r = run_command(tapml("test --corpus " + q(partial) + " --backend cpu"));
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_NE(r.err.find("its carve did not finish"), std::string::npos) << r.err;
  r = run_command(tapml("test --corpus " + q(partial) + " --backend cpu --allow-partial"));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(" passed, 0 failed"), std::string::npos) << r.out;
}

TEST(CarveCli, AFailedCarveLeavesTheOldCorpus) {
  std::string dir = testing::temp_dir();
  std::string p = dir + "/c.corpus";
  std::string model = shared_path("models/stories260K/stories260K.gguf");
  ASSERT_EQ(run_command(tapml("carve --model " + q(model) + " --prompt '' --steps 6 --out " + q(p)))
                .exit_code,
            0);
  auto before = run_command(tapml("corpus info --corpus " + q(p) + " --json")).out;
  // An unreachable source, and a prompt that is not UTF-8: neither may cost the old corpus.
  auto r = run_command(tapml("carve --model " + q(model) + " --prompt x --steps 6 --overwrite " +
                             "--source tcp://127.0.0.1:1 --out " + q(p)));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(run_command(tapml("corpus info --corpus " + q(p) + " --json")).out, before);
  r = run_command(tapml("carve --model " + q(model) + " --prompt \"$(printf '\\377\\376')\" " +
                        "--steps 6 --overwrite --out " + q(p)));
  EXPECT_EQ(r.exit_code, 0) << r.err;  // bytes that are not UTF-8 are a prompt like any other
  EXPECT_NE(run_command(tapml("corpus info --corpus " + q(p) + " --json")).out, before);
  // Refused before any work: --overwrite of something that is not a corpus.
  r = run_command(
      tapml("carve --model " + q(model) + " --prompt x --steps 6 --overwrite --out " + q(model)));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("not a TapML corpus"), std::string::npos) << r.err;
}

TEST(CarveCli, DamagedCorporaGiveOneLineErrors) {
  std::string dir = testing::temp_dir();
  std::ifstream in(stories_corpus(), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::pair<std::string, std::string>> cases = {
      {"missing", ""},
      {"foreign", std::string(5000, 'x')},
      {"truncated", bytes.substr(0, bytes.size() / 3)},
      {"header-only", bytes.substr(0, 100)}};
  for (const auto& [name, content] : cases) {
    std::string p = dir + "/" + name + ".corpus";
    if (name != "missing") std::ofstream(p, std::ios::binary) << content;
    auto r = run_command(tapml("test --corpus " + q(p) + " --backend cpu"));
    EXPECT_NE(r.exit_code, 0) << name;
    EXPECT_EQ(r.err.rfind("tapml: ", 0), 0u) << name << ": " << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << name << ": " << r.err;
    EXPECT_NE(r.err.find(p), std::string::npos) << name << ": " << r.err;
  }
}

TEST(CarveCli, ProgressShowsRateAndEtaInALogAndQuietSilencesIt) {
  // stderr is a pipe here, as in a CI log: lines, not a redrawn one. TAPML_PROGRESS_SECONDS=0
  // prints at every update instead of every 5 s, so a short carve shows its progress.
  std::string dir = testing::temp_dir();
  std::string args = "carve --model " + q(shared_path("models/stories260K/stories260K.gguf")) +
                     " --prompt 'Once upon a time' --steps 12 --out ";
  auto r = run_command("TAPML_PROGRESS_SECONDS=0 " + tapml(args + q(dir + "/p.corpus")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("/12 positions, "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("/s, ETA "), std::string::npos) << r.err;
  auto quiet =
      run_command("TAPML_PROGRESS_SECONDS=0 " + tapml(args + q(dir + "/q.corpus") + " -q"));
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err.find("positions"), std::string::npos) << quiet.err;
}

TEST(CarveCli, BadArguments) {
  auto r =
      run_command(tapml("test --corpus " + q(stories_corpus()) + " --backend cpu --shard 4/3"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--shard"), std::string::npos);
  r = run_command(tapml("carve --model " + q(shared_path("models/stories260K/stories260K.gguf")) +
                        " --out " + q(testing::temp_dir() + "/x.corpus")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--prompt"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tapml

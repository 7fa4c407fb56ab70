// `tapml serve` as a separate process on 127.0.0.1, driven by the tcp:// backend through
// the real CLI: replay, run and migrate agree with local backends; a killed server is a
// quick clear error; tokens are enforced.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "backends/builtin.h"
#include "core/error.h"
#include "rpc/socket.h"
#include "support/golden.h"
#include "support/shared.h"

namespace tapml {
namespace {

using testing::run_command;
using testing::shared_path;
using testing::shell_quote;

std::string tapml(const std::string& args) { return testing::tapml_command(args); }
std::string q(const std::string& s) { return shell_quote(s); }
std::string model() { return shared_path("models/stories260K/stories260K.gguf"); }

// A `tapml serve` child process; the port comes from its first line of output.
class ServeProcess {
 public:
  explicit ServeProcess(std::vector<std::string> args) {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe failed");
    std::string bin = testing::tapml_binary();
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 2);
      close(out[0]);
      std::vector<char*> argv = {bin.data(), const_cast<char*>("serve")};
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    fd_ = out[0];
    // Read the first line, waiting at most 10 s.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (line_.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char c;
      if (read(fd_, &c, 1) != 1) break;
      line_ += c;
    }
  }
  ~ServeProcess() { kill(); }
  const std::string& first_line() const { return line_; }
  int port() const {
    auto c = line_.rfind(':');
    return c == std::string::npos ? -1 : std::atoi(line_.c_str() + c + 1);
  }
  std::string uri(const std::string& query = "") const {
    return "tcp://127.0.0.1:" + std::to_string(port()) + query;
  }
  // The exit status, waiting at most `ms`; -1 if still running.
  int wait(int ms) {
    for (int i = 0; i <= ms / 10; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  void kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (fd_ >= 0) close(fd_), fd_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string line_;
};

const std::string& small_corpus() {
  static std::string path = [] {
    std::string p = testing::temp_dir() + "/serve.corpus";
    auto r = run_command(tapml("carve --model " + q(model()) +
                               " --prompt 'Once upon a time' --steps 24 --out " + q(p)));
    if (r.exit_code != 0) throw std::runtime_error("carve failed: " + r.err);
    return p;
  }();
  return path;
}

// Per test: pass, check and detail, in corpus order.
nlohmann::json verdicts(const std::string& backend, int* rc) {
  std::string report = testing::temp_dir() + "/r.json";
  auto r = run_command(tapml("test --corpus " + q(small_corpus()) + " --backend " + q(backend) +
                             " --json " + q(report)));
  *rc = r.exit_code;
  std::ifstream f(report);
  if (!f) throw std::runtime_error("no report: " + r.out + r.err);
  nlohmann::json out = nlohmann::json::array();
  nlohmann::json j = nlohmann::json::parse(f);
  for (auto& t : j["tests"]) out.push_back({t["id"], t["pass"], t["check"], t["detail"]});
  return out;
}

TEST(ServeCli, ReplayOverTcpGivesTheLocalVerdicts) {
  for (std::string backend : {"cpu", "faulty:cpu?fault=rope_pairing"}) {
    ServeProcess server({"--backend", backend, "--listen", "127.0.0.1:0"});
    ASSERT_EQ(server.first_line().rfind("listening on 127.0.0.1:", 0), 0u) << server.first_line();
    int rc_local = -1, rc_remote = -1;
    nlohmann::json local = verdicts(backend, &rc_local);
    nlohmann::json remote = verdicts(server.uri(), &rc_remote);
    EXPECT_EQ(rc_remote, rc_local) << backend;
    EXPECT_GT(local.size(), 50u);
    EXPECT_EQ(remote, local) << backend;
  }
}

TEST(ServeCli, RunGivesTheGoldenTokensAndMigrateWorks) {
  ServeProcess server({"--backend", "cpu?threads=1", "--listen", "127.0.0.1:0"});
  const testing::Golden g = testing::stories_goldens()[0];
  auto r = run_command(tapml("run --model " + q(shared_path("models/stories260K/stories260K.bin")) +
                             " --tokenizer " + q(shared_path("models/stories260K/tok512.bin")) +
                             " --prompt " + q(g.prompt) + " --steps 96 --backend " +
                             q(server.uri()) + " --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Greedy decoding: the first 96 positions (97 ids with BOS) of the golden generation.
  ASSERT_GE(g.token_ids.size(), 97u);
  std::vector<int> want(g.token_ids.begin(), g.token_ids.begin() + 97);
  EXPECT_EQ(nlohmann::json::parse(r.out)["token_ids"].get<std::vector<int>>(), want);
  r = run_command(tapml("migrate --model " + q(model()) + " --backend " + q(server.uri()) +
                        " --steps 24 --quiet"));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("PASS"), std::string::npos) << r.out;
}

TEST(ServeCli, AKilledServerIsAClearErrorWithinSecondsAndARestartWorks) {
  auto server = std::make_unique<ServeProcess>(
      std::vector<std::string>{"--backend", "cpu?threads=1", "--listen", "127.0.0.1:0"});
  int port = server->port();
  ASSERT_GT(port, 0);
  std::string uri = server->uri();
  // A long run in the background; the server dies under it.
  std::string err = testing::temp_dir() + "/err.txt";
  std::string cmd = tapml("run --model " + q(model()) + " --steps 256 --backend " + q(uri)) +
                    " >/dev/null 2>" + q(err) + "; echo $? >" + q(err + ".rc");
  pid_t client = fork();
  if (client == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
    _exit(127);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  server->kill();
  auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  for (int i = 0; i < 1000 && waitpid(client, &status, WNOHANG) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 10.0);
  std::ifstream rc_file(err + ".rc"), err_file(err);
  int rc = -1;
  rc_file >> rc;
  std::string message((std::istreambuf_iterator<char>(err_file)), std::istreambuf_iterator<char>());
  EXPECT_NE(rc, 0);
  EXPECT_NE(message.find(uri.substr(0, uri.size()) + ": connection lost"), std::string::npos)
      << message;
  // The same port again, and the replay works.
  ServeProcess again({"--backend", "cpu", "--listen", "127.0.0.1:" + std::to_string(port)});
  ASSERT_EQ(again.port(), port) << again.first_line();
  int rc2 = -1;
  nlohmann::json v = verdicts(again.uri(), &rc2);
  EXPECT_EQ(rc2, 0);
}

TEST(ServeCli, TokensAreEnforcedAndExposureNeedsOne) {
  ServeProcess server({"--backend", "ref", "--listen", "127.0.0.1:0", "--token", "s3cret"});
  auto r = run_command(
      tapml("test --corpus " + q(small_corpus()) + " --backend " + q(server.uri("?token=wrong"))));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("refused the connection: wrong token"), std::string::npos) << r.err;
  r = run_command(tapml("test --corpus " + q(small_corpus()) + " --backend " +
                        q(server.uri("?token=s3cret")) + " --op add"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = run_command(tapml("serve --backend ref --listen 0.0.0.0:0"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--token"), std::string::npos) << r.err;
}

// The token and all data cross the network unencrypted: --help says so and names the SSH
// tunnel, and serving a non-loopback address prints one warning line (loopback: none).
TEST(ServeCli, TheTokenTravelsInClearAndServeSaysSo) {
  auto r = run_command(tapml("serve --help"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("clear text"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ssh -L 7000:127.0.0.1:7000 gpu-host"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tcp://127.0.0.1:7000"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("TLS"), std::string::npos) << r.out;
  // SIGINT after half a second: serve exits cleanly, and stderr holds what it printed.
  r = run_command("timeout -s INT 0.5 " +
                  tapml("serve --backend ref --listen 0.0.0.0:0 --token s3cret"));
  EXPECT_EQ(r.out.rfind("listening on 0.0.0.0:", 0), 0u) << r.out << r.err;
  EXPECT_NE(r.err.find("warning"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("clear text"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ssh -L"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  r = run_command("timeout -s INT 0.5 " + tapml("serve --backend ref --listen 127.0.0.1:0"));
  EXPECT_EQ(r.out.rfind("listening on 127.0.0.1:", 0), 0u) << r.out << r.err;
  EXPECT_EQ(r.err, "");
}

// What a server tells its clients in HELLO_OK: the defaults, and each limit its flag sets.
TEST(ServeCli, TheLimitsAreReportedInHelloOk) {
  auto hello_ok = [](const ServeProcess& p) {
    rpc::Socket raw = rpc::connect_tcp("127.0.0.1", uint16_t(p.port()), 2000);
    rpc::Message m;
    m.type = rpc::MsgType::Hello;
    raw.send_frame(m, 1000);
    std::vector<uint8_t> payload;
    raw.recv_frame(payload, rpc::kMaxFrameBytes, 5000, 1000);
    m = rpc::decode_message(payload);
    EXPECT_EQ(m.type, rpc::MsgType::HelloOk) << m.text;
    return m.hello_ok;
  };
  ServeProcess defaults({"--backend", "ref", "--listen", "127.0.0.1:0"});
  rpc::HelloOk h = hello_ok(defaults);
  EXPECT_EQ(h.version, 3u);
  EXPECT_EQ(h.max_connections, 32u);
  EXPECT_EQ(h.idle_timeout_ms, 600000u);
  EXPECT_EQ(h.memory_bytes, uint64_t(4) << 30);
  EXPECT_EQ(h.total_memory_bytes, uint64_t(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE) / 2);
  EXPECT_EQ(h.cache_bytes, uint64_t(1) << 30);
  ServeProcess set({"--backend", "ref", "--listen", "127.0.0.1:0", "--max-connections", "3",
                    "--idle-timeout", "7", "--max-memory", "1000", "--max-total-memory", "5000",
                    "--cache-memory", "0"});
  h = hello_ok(set);
  EXPECT_EQ(h.max_connections, 3u);
  EXPECT_EQ(h.idle_timeout_ms, 7000u);
  EXPECT_EQ(h.memory_bytes, 1000u);
  EXPECT_EQ(h.total_memory_bytes, 5000u);
  EXPECT_EQ(h.cache_bytes, 0u);
  EXPECT_EQ(h.capabilities & rpc::kCapHashProbe, 0u);
  ServeProcess never({"--backend", "ref", "--listen", "127.0.0.1:0", "--idle-timeout", "0"});
  EXPECT_EQ(hello_ok(never).idle_timeout_ms, 0u);
}

TEST(ServeCli, MaxTotalMemoryCapsAllConnectionsTogether) {
  ServeProcess server({"--backend", "ref", "--listen", "127.0.0.1:0", "--max-total-memory", "5000",
                       "--max-memory", "4096"});
  auto a = open_backend(server.uri()), b = open_backend(server.uri());
  a->alloc(4096);
  std::string e;
  try {
    b->alloc(1000);
  } catch (const Error& x) {
    e = x.what();
  }
  EXPECT_NE(e.find("memory cap of 5000 bytes (--max-total-memory"), std::string::npos) << e;
  EXPECT_NO_THROW(b->alloc(904));
}

// Limits that would give a server nobody can use are usage errors, before anything listens.
// (`timeout` only matters if one is accepted: the server would otherwise run on.)
TEST(ServeCli, UnusableLimitsAreUsageErrors) {
  for (std::string bad : {"--max-connections 0", "--max-connections -1", "--max-memory 0",
                          "--max-memory -1", "--max-connections x", "--max-total-memory 0",
                          "--max-total-memory 1.5G", "--idle-timeout -1", "--idle-timeout 1.5"}) {
    auto r = run_command("timeout 3 " + tapml("serve --backend ref --listen 127.0.0.1:0 " + bad));
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_NE(r.exit_code, 124) << bad << ": the server started";
    std::string flag = bad.substr(0, bad.find(' '));
    EXPECT_NE(r.err.find(flag), std::string::npos) << bad << ": " << r.err;
    EXPECT_EQ(r.out, "") << bad;
  }
}

}  // namespace
}  // namespace tapml

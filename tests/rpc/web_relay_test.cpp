// The browser relay and the webgpu:// backend, with a fake WebGPU device written here: a
// WebSocket client that serves the protocol over a local cpu backend, as a tab would. Calls
// go backend -> relay -> device and back; refusals (token, origin, a second device of a name,
// a busy or absent device) and a device that dies, falls silent or sends garbage each end
// only their own session, quickly.
#include "rpc/web_relay.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "backend/host_call.h"
#include "backends/builtin.h"
#include "core/error.h"
#include "rpc/protocol.h"
#include "rpc/transport.h"
#include "rpc/web_files.h"
#include "support/errors.h"

namespace tapml::rpc {
namespace {

using testing::contains;
using testing::error_of;
using Clock = std::chrono::steady_clock;

enum class Misbehave { None, DieOnRun, SilentOnRun, MalformedOnceOnRun, RpcErrorOnRun };

// A WebGPU device as the page would be: connects out, answers the relay's control messages,
// and serves HELLO, ALLOC, FREE, WRITE, READ, SUPPORTS, RUN and SYNC over a cpu backend.
class FakeDevice {
 public:
  FakeDevice(uint16_t port, const std::string& query, Misbehave how = Misbehave::None) : how_(how) {
    Socket s = connect_tcp("127.0.0.1", port, 1000);
    connect_websocket(s, "127.0.0.1:" + std::to_string(port), "/ws/device?" + query, 1000);
    ws_ = std::make_unique<WebSocket>(std::move(s), WebSocket::Role::Client, 64 << 20);
    WebSocket::Message hello = ws_->receive(1000, 1000);
    EXPECT_TRUE(contains(hello.text(), "\"relay\":\"tapml\""));
    ws_->send_text(R"({"type":"device-info","adapter":"fake adapter","runtime":"test"})", 1000);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeDevice() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<std::string> control() {
    std::lock_guard lock(mutex_);
    return control_;
  }
  bool saw(const std::string& part) {
    for (auto& c : control())
      if (c.find(part) != std::string::npos) return true;
    return false;
  }

 private:
  void serve() {
    auto cpu = open_backend("cpu?threads=1");
    while (!stop_) {
      WebSocket::Message m;
      try {
        m = ws_->receive(50, 1000);
      } catch (const Timeout&) {
        continue;
      } catch (const Error&) {
        return;
      }
      if (m.kind == WebSocket::Kind::Closed) return;
      if (m.kind == WebSocket::Kind::Text) {
        std::lock_guard lock(mutex_);
        control_.push_back(m.text());
        continue;
      }
      Message r = decode_message(frame_payload(m.data, kMaxFrameBytes));
      Message reply;
      reply.type = MsgType::Ok;
      try {
        switch (r.type) {
          case MsgType::Hello:
            reply.type = MsgType::HelloOk;
            reply.hello_ok.name = "webgpu";
            reply.hello_ok.device = "fake adapter (test)";
            reply.hello_ok.max_buffer_bytes = reply.hello_ok.memory_bytes =
                reply.hello_ok.total_memory_bytes = 1 << 30;
            reply.hello_ok.max_connections = 1;
            reply.hello_ok.ops = {"add"};
            reply.hello_ok.dtypes = {DType::F32, DType::F16, DType::I32};
            break;
          case MsgType::Alloc:
            reply.type = MsgType::Allocated;
            reply.id = cpu->alloc(r.size);
            break;
          case MsgType::Free:
            cpu->free(r.id);
            break;
          case MsgType::Write:
            cpu->write(r.id, r.offset, r.data.data(), r.data.size());
            break;
          case MsgType::Read:
            reply.type = MsgType::Data;
            reply.data.resize(r.size);
            cpu->read(r.id, r.offset, reply.data.data(), r.size);
            break;
          case MsgType::Supports: {
            Support s = cpu->supports(r.call);
            reply.type = MsgType::Support;
            reply.flag = s.ok;
            reply.text = s.reason;
            break;
          }
          case MsgType::Run:
            if (how_ == Misbehave::DieOnRun) {
              ws_->socket().shutdown();
              return;
            }
            if (how_ == Misbehave::SilentOnRun) {
              while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(10));
              return;
            }
            if (how_ == Misbehave::MalformedOnceOnRun) {
              how_ = Misbehave::None;
              std::vector<uint8_t> bad = {9, 0, 0, 0, 0x82};  // says 9 bytes, holds 1
              ws_->send_binary(bad, 1000);
              continue;
            }
            if (how_ == Misbehave::RpcErrorOnRun) {
              reply.type = MsgType::Error;
              reply.text = "rpc: the device lost its GPU";
              break;
            }
            cpu->run(r.call);
            break;
          default:
            break;
        }
      } catch (const Error& e) {
        reply.type = MsgType::Error;
        reply.text = e.what();
      }
      ws_->send_binary(encode_frame(reply), 1000);
    }
  }

  Misbehave how_;
  std::unique_ptr<WebSocket> ws_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::vector<std::string> control_;
};

struct Relay {
  explicit Relay(WebRelayOptions o = {}) {
    if (o.token.empty()) o.token = "s3cret";
    o.log = [this](const std::string& line) {
      std::lock_guard lock(mutex);
      log.push_back(line);
    };
    relay = std::make_unique<WebRelay>(o);
    relay->start();
  }
  std::string uri(const std::string& rest = "?token=s3cret") const {
    return "webgpu://127.0.0.1:" + std::to_string(relay->port()) + rest;
  }
  uint16_t port() const { return relay->port(); }
  bool logged(const std::string& part) {
    std::lock_guard lock(mutex);
    for (auto& l : log)
      if (l.find(part) != std::string::npos) return true;
    return false;
  }
  // Waits (briefly) until `name` is connected, so a client does not race the device in.
  void wait_for(const std::string& name, bool present = true) {
    for (int i = 0; i < 200; ++i) {
      bool found = false;
      for (auto& d : relay->devices()) found = found || d.name == name;
      if (found == present) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "device " << name << (present ? " never came" : " never left");
  }
  std::mutex mutex;
  std::vector<std::string> log;
  std::unique_ptr<WebRelay> relay;
};

template <class F>
bool eventually(F f) {
  for (int i = 0; i < 200; ++i) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

void expect_add_works(Backend& b) {
  std::vector<float> x = {1, 2, 3, 4, 5, 6}, y = {10, 20, 30, 40, 50, 60};
  HostCallResult r = run_host_call(
      b, Op::Add, {}, {Tensor::from_f32(Shape{2, 3}, x), Tensor::from_f32(Shape{2, 3}, y)});
  ASSERT_EQ(r.outputs.size(), 1u);
  const float* out = reinterpret_cast<const float*>(r.outputs[0].bytes());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(out[i], x[i] + y[i]);
}

// Status line and body of a plain HTTP exchange.
std::pair<int, std::string> http(uint16_t port, const std::string& request) {
  Socket s = connect_tcp("127.0.0.1", port, 1000);
  s.send_all(request.data(), request.size(), 1000);
  std::string all;
  char buf[4096];
  for (;;) {
    size_t n = 0;
    try {
      s.recv_all(buf, 1, 2000);
      n = 1;
    } catch (const Error&) {
      break;
    }
    all.append(buf, n);
  }
  size_t body = all.find("\r\n\r\n");
  return {std::atoi(all.substr(9, 3).c_str()),
          body == std::string::npos ? "" : all.substr(body + 4)};
}

std::pair<int, std::string> get(uint16_t port, const std::string& path) {
  return http(port, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
}

TEST(WebRelay, AnAddRunsThroughTheRelayAndAFakeDevice) {
  Relay r;
  FakeDevice dev(r.port(), "name=default&token=s3cret");
  r.wait_for("default");
  {
    auto b = open_backend(r.uri());
    EXPECT_EQ(b->info().name, "webgpu");
    EXPECT_EQ(b->info().device, "fake adapter (test)");
    expect_add_works(*b);
    EXPECT_TRUE(dev.saw("\"type\":\"session-start\""));
  }
  EXPECT_TRUE(eventually([&] { return dev.saw("\"type\":\"session-end\""); }));
  // The device serves the next session too, named in the URI.
  auto b = open_backend(r.uri("/default?token=s3cret"));
  expect_add_works(*b);
  EXPECT_TRUE(r.logged("device 'default' connected"));
  EXPECT_TRUE(r.logged("fake adapter"));
  EXPECT_TRUE(r.logged("session: client"));
}

TEST(WebRelay, AClientWaitsForTheDeviceToArrive) {
  Relay r;
  std::unique_ptr<FakeDevice> dev;
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    dev = std::make_unique<FakeDevice>(r.port(), "name=tab2&token=s3cret");
  });
  auto b = open_backend(r.uri("/tab2?token=s3cret&wait_ms=5000"));
  later.join();
  expect_add_works(*b);
}

TEST(WebRelay, AWaitingClientGivesUpNamingTheUrlToOpen) {
  Relay r;
  auto t0 = Clock::now();
  std::string e = error_of([&] { open_backend(r.uri("/lab?token=s3cret&wait_ms=300")); });
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
  EXPECT_TRUE(contains(e, "no WebGPU device named 'lab' connected within 300 ms"));
  EXPECT_TRUE(
      contains(e, "open http://127.0.0.1:" + std::to_string(r.port()) + "/?name=lab&token=s3cret"));
}

TEST(WebRelay, ABusyDeviceRefusesASecondClientAfterItsWait) {
  Relay r;
  FakeDevice dev(r.port(), "token=s3cret");
  r.wait_for("default");
  auto first = open_backend(r.uri());
  std::string e = error_of([&] { open_backend(r.uri("?token=s3cret&wait_ms=200")); });
  EXPECT_TRUE(contains(e, "stayed busy with another client"));
  expect_add_works(*first);
}

TEST(WebRelay, TokensOriginsAndDuplicateNamesAreRefused) {
  Relay r;
  EXPECT_TRUE(contains(error_of([&] { open_backend(r.uri("?token=nope")); }),
                       "the relay refused the connection: HTTP 403: wrong or missing token"));
  EXPECT_TRUE(contains(error_of([&] { FakeDevice d(r.port(), "name=x"); }), "HTTP 403"));
  std::string handshake =
      "GET /ws/device?token=s3cret HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(r.port()) +
      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
  auto [status, body] = http(r.port(), handshake + "Origin: http://evil.example\r\n\r\n");
  EXPECT_EQ(status, 403);
  EXPECT_TRUE(contains(body, "origin http://evil.example is not this relay's page"));
  // The relay's own page may connect.
  FakeDevice first(r.port(), "name=gpu&token=s3cret");
  r.wait_for("gpu");
  auto [dup, why] =
      http(r.port(), "GET /ws/device?name=gpu&token=s3cret HTTP/1.1\r\nHost: 127.0.0.1:" +
                         std::to_string(r.port()) +
                         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version:"
                         " 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://"
                         "127.0.0.1:" +
                         std::to_string(r.port()) + "\r\n\r\n");
  EXPECT_EQ(dup, 409);
  EXPECT_TRUE(contains(why, "a WebGPU device named 'gpu' is already connected"));
  WebRelayOptions open;
  open.host = "0.0.0.0";
  EXPECT_TRUE(contains(error_of([&] { WebRelay w(open); }), "needs a token"));
}

TEST(WebRelay, ADeviceThatDiesMidSessionFailsTheClientQuickly) {
  Relay r;
  FakeDevice dev(r.port(), "token=s3cret", Misbehave::DieOnRun);
  r.wait_for("default");
  auto b = open_backend(r.uri());
  auto t0 = Clock::now();
  std::string e = error_of([&] { expect_add_works(*b); });
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
  EXPECT_TRUE(contains(e, r.uri("") + ": connection lost (the WebGPU device 'default' went away"));
  // Every later call says the same, at once.
  EXPECT_TRUE(contains(error_of([&] { b->alloc(16); }), "went away"));
  EXPECT_TRUE(eventually([&] { return r.logged("device 'default' left"); }));
}

TEST(WebRelay, ASilentDeviceIsDroppedAfterTheLivenessTimeout) {
  WebRelayOptions o;
  o.ping_interval_ms = 100;
  o.device_timeout_ms = 400;
  Relay r(o);
  FakeDevice dev(r.port(), "token=s3cret", Misbehave::SilentOnRun);
  r.wait_for("default");
  auto b = open_backend(r.uri());
  auto t0 = Clock::now();
  std::string e = error_of([&] { expect_add_works(*b); });
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
  EXPECT_TRUE(contains(e, "went away (no answer to pings for 400 ms)"));
}

TEST(WebRelay, AMalformedFrameFromTheDeviceEndsOnlyThatSession) {
  Relay r;
  FakeDevice dev(r.port(), "token=s3cret", Misbehave::MalformedOnceOnRun);
  r.wait_for("default");
  {
    auto b = open_backend(r.uri());
    EXPECT_TRUE(contains(error_of([&] { expect_add_works(*b); }), "sent a malformed frame"));
  }
  // The device is still connected and serves the next client.
  auto again = open_backend(r.uri("?token=s3cret&wait_ms=3000"));
  expect_add_works(*again);
}

TEST(WebRelay, AnRpcErrorFromTheDeviceClosesTheClient) {
  Relay r;
  FakeDevice dev(r.port(), "token=s3cret", Misbehave::RpcErrorOnRun);
  r.wait_for("default");
  auto b = open_backend(r.uri());
  EXPECT_TRUE(contains(error_of([&] { expect_add_works(*b); }),
                       "connection lost (the device lost its GPU)"));
  EXPECT_TRUE(eventually([&] { return dev.saw("session-end"); }));
}

TEST(WebRelay, ServesThePageFilesAnd404) {
  auto dir = std::filesystem::temp_directory_path() / ("tapml-web-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "kernels");
  std::filesystem::create_directories(dir / "node_modules");
  std::ofstream(dir / "index.html") << "<title>device</title>";
  std::ofstream(dir / "kernels" / "add.wgsl") << "fn main() {}";
  std::ofstream(dir / "notes.md") << "no";
  std::ofstream(dir / "node_modules" / "x.js") << "no";
  WebRelayOptions o;
  o.web_dir = dir.string();
  Relay r(o);
  auto [s1, b1] = get(r.port(), "/");
  EXPECT_EQ(s1, 200);
  EXPECT_EQ(b1, "<title>device</title>");
  auto [s2, b2] = get(r.port(), "/kernels/add.wgsl");
  EXPECT_EQ(s2, 200);
  EXPECT_EQ(b2, "fn main() {}");
  for (std::string p : {"/notes.md", "/node_modules/x.js", "/../index.html", "/missing.js"})
    EXPECT_EQ(get(r.port(), p).first, 404) << p;
  EXPECT_EQ(web_content_type("app.mjs"), "text/javascript; charset=utf-8");
  std::filesystem::remove_all(dir);
  // Without a folder, the page is what this build embedded.
  Relay built;
  auto [s3, b3] = get(built.port(), "/");
  if (embedded_web_files().empty()) {
    EXPECT_EQ(s3, 404);
    EXPECT_TRUE(contains(b3, "not built into this tapml"));
  } else {
    EXPECT_EQ(s3, 200);
  }
}

TEST(WebRelay, StopEndsEveryConnectionPromptly) {
  auto r = std::make_unique<Relay>();
  FakeDevice dev(r->port(), "token=s3cret");
  r->wait_for("default");
  auto b = open_backend(r->uri());
  auto t0 = Clock::now();
  r->relay->stop();
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
  EXPECT_TRUE(contains(error_of([&] { expect_add_works(*b); }), "connection lost"));
}

TEST(WebRelay, ARunnerThatDiesIsReportedWithItsOutputAndStatus) {
  auto dir =
      std::filesystem::temp_directory_path() / ("tapml-runner-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "node-device.mjs") << "// stand-in";
  {
    std::ofstream node(dir / "node");
    node << "#!/bin/sh\necho \"started with $3\"\necho 'no WebGPU adapter found' >&2\nexit 3\n";
  }
  std::filesystem::permissions(dir / "node", std::filesystem::perms::owner_all);
  ::setenv("TAPML_WEB_DIR", dir.c_str(), 1);
  ::setenv("TAPML_NODE", (dir / "node").c_str(), 1);
  auto t0 = Clock::now();
  std::string e = error_of([&] { open_backend("webgpu:node?wait_ms=5000"); });
  ::unsetenv("TAPML_WEB_DIR");
  ::unsetenv("TAPML_NODE");
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
  EXPECT_TRUE(contains(e,
                       "webgpu:node: the Node runner exited with status 3 before its device "
                       "connected"));
  EXPECT_TRUE(contains(e, "no WebGPU adapter found"));
  EXPECT_TRUE(contains(e, "started with ws://127.0.0.1:"));  // the device URL it was given
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tapml::rpc

// Who gets a connection, and for how long: idle clients are closed after the idle timeout, a
// full server makes room by closing the longest-idle client (telling it why), connections
// that never say HELLO cannot crowd out those that do, HELLO_OK reports the limits, and a
// protocol version mismatch is one clear line on either side.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <thread>

#include "backend/host_call.h"
#include "backends/builtin.h"
#include "core/error.h"
#include "rpc/server.h"
#include "rpc/socket.h"
#include "support/running_server.h"

namespace tapml::rpc {
namespace {

using testing::ask;
using testing::RunningServer;
using Clock = std::chrono::steady_clock;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// An add on the backend: proof that a client is served.
void use(Backend& b) {
  const std::vector<float> x = {1, 2}, y = {3, 4};
  std::vector<Tensor> in = {Tensor::from_f32(Shape{1, 2}, x), Tensor::from_f32(Shape{1, 2}, y)};
  EXPECT_EQ(run_host_call(b, Op::Add, {}, in).outputs[0].to_f32()[1], 6.0f);
}

TEST(RpcConnections, AClientSilentPastTheIdleTimeoutIsClosedAndToldWhy) {
  ServerOptions o;
  o.idle_timeout_ms = 300;
  RunningServer s("cpu?threads=1", o);
  auto b = open_backend(s.uri());
  b->alloc(1000);
  for (int i = 0; i < 4; ++i) {  // requests 150 ms apart keep it open well past 300 ms
    sleep_ms(150);
    EXPECT_NO_THROW(b->sync());
  }
  sleep_ms(600);
  std::string e = error_of([&] { b->sync(); });
  EXPECT_NE(e.find(s.uri() + ": connection lost (closed after 300 ms without a request"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("--idle-timeout"), std::string::npos) << e;
  EXPECT_EQ(s.server().stats().buffer_bytes, 0u);  // its buffers went with it
  // A raw client sees the ERROR arrive unasked, then the end of the stream.
  Socket raw = s.raw_client();
  std::vector<uint8_t> p;
  ASSERT_TRUE(raw.recv_frame(p, kMaxFrameBytes, 2000, 1000));
  Message m = decode_message(p);
  EXPECT_EQ(m.type, MsgType::Error);
  EXPECT_EQ(m.text.rfind("rpc: closed after 300 ms without a request", 0), 0u) << m.text;
  EXPECT_FALSE(raw.recv_frame(p, kMaxFrameBytes, 1000, 1000));
}

TEST(RpcConnections, AFullServerClosesTheLongestIdleClientForANewOne) {
  ServerOptions o;
  o.max_connections = 2;
  o.evict_min_idle_ms = 0;
  RunningServer s("cpu?threads=1", o);
  auto a = open_backend(s.uri());
  auto b = open_backend(s.uri());
  sleep_ms(20);
  b->sync();  // a has now been idle longest
  auto c = open_backend(s.uri());
  std::string e = error_of([&] { a->sync(); });
  EXPECT_NE(e.find(s.uri() + ": connection lost (closed after "), std::string::npos) << e;
  EXPECT_NE(e.find("idle to make room for a new client"), std::string::npos) << e;
  EXPECT_NE(e.find("--max-connections 2"), std::string::npos) << e;
  use(*b);
  use(*c);
  sleep_ms(20);
  c->sync();  // b has now been idle longest, so it makes room for d
  auto d = open_backend(s.uri());
  EXPECT_NE(error_of([&] { b->sync(); }).find("to make room"), std::string::npos);
  use(*c);
  use(*d);
}

TEST(RpcConnections, WhenNoClientIsIdleANewOneIsRefusedClearly) {
  ServerOptions o;
  o.max_connections = 1;
  o.evict_min_idle_ms = 60000;  // nobody has been idle that long
  RunningServer s("cpu?threads=1", o);
  auto a = open_backend(s.uri());
  std::string e = error_of([&] { open_backend(s.uri()); });
  EXPECT_NE(e.find("refused the connection: server busy: 1 client connected, none idle for 60 s"),
            std::string::npos)
      << e;
  use(*a);
}

// A connection to the server from source address `from` (any 127.x.y.z is this machine).
Socket connect_from(const char* from, uint16_t port) {
  Socket s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  ::inet_pton(AF_INET, from, &a.sin_addr);
  if (::bind(s.fd(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw Error("bind failed");
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (::connect(s.fd(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw Error("connect failed");
  return s;
}

// Connections that never say HELLO have a budget of their own, so they cannot keep clients
// out: not by being many, and (from another host) not by being reopened as fast as can be.
TEST(RpcConnections, SilentConnectionsDoNotKeepClientsOut) {
  ServerOptions o;
  o.max_connections = 4;
  o.max_handshakes = 4;
  // Long, so that clients cannot be let in by silent connections timing out: each must get
  // in well within it.
  o.hello_timeout_ms = 10000;
  const auto quickly = std::chrono::seconds(5);
  RunningServer s("cpu?threads=1", o);
  const uint16_t port = s.server().port();
  std::vector<Socket> held;
  for (int i = 0; i < 64; ++i) held.push_back(s.raw_client(false));
  std::vector<std::unique_ptr<Backend>> clients;
  auto t0 = Clock::now();
  for (int i = 0; i < 4; ++i) clients.push_back(open_backend(s.uri()));
  for (auto& c : clients) use(*c);
  EXPECT_LT(Clock::now() - t0, quickly);
  clients.clear();
  // A flood from 127.0.0.2: 64 held open, and thousands more a second.
  for (auto& h : held) h = connect_from("127.0.0.2", port);
  std::atomic<bool> stop{false};
  std::atomic<int> flooded{0};
  std::thread flood([&] {
    std::deque<Socket> q;
    while (!stop) {
      try {
        q.push_back(connect_from("127.0.0.2", port));
        ++flooded;
      } catch (const Error&) {
      }
      if (q.size() > 32) q.pop_front();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  while (flooded < 100) sleep_ms(1);
  t0 = Clock::now();
  for (int i = 0; i < 4; ++i) {
    try {
      clients.push_back(open_backend(s.uri()));
      use(*clients.back());
    } catch (const Error& e) {
      ADD_FAILURE() << "client " << i << ": " << e.what();
    }
  }
  EXPECT_LT(Clock::now() - t0, quickly);
  stop = true;
  flood.join();
  for (auto& c : clients) use(*c);
}

// The whole HELLO must arrive within the handshake deadline, however it is dribbled in.
TEST(RpcConnections, TheHandshakeDeadlineCoversTheWholeHello) {
  ServerOptions o;
  o.hello_timeout_ms = 300;
  o.frame_timeout_ms = 5000;
  RunningServer s("cpu?threads=1", o);
  Socket raw = s.raw_client(false);
  Message m;
  m.type = MsgType::Hello;
  std::vector<uint8_t> f = encode_frame(m);
  auto t0 = Clock::now();
  std::string e;
  try {
    for (uint8_t byte : f) {  // one byte every 100 ms: 2 s for the frame
      raw.send_all(&byte, 1, 1000);
      sleep_ms(100);
    }
    std::vector<uint8_t> p;
    if (raw.recv_frame(p, kMaxFrameBytes, 1000, 1000)) e = decode_message(p).text;
  } catch (const Error& x) {
    e = x.what();
  }
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1000)) << e;
  std::vector<uint8_t> p;
  try {
    if (raw.recv_frame(p, kMaxFrameBytes, 1000, 1000)) e = decode_message(p).text;
  } catch (const Error&) {
  }
  EXPECT_NE(e.find("no HELLO within 300 ms"), std::string::npos) << e;
}

TEST(RpcConnections, HelloOkReportsTheLimits) {
  ServerOptions o;
  o.max_connections = 7;
  o.idle_timeout_ms = 90000;
  o.max_memory = 1 << 20;
  o.max_total_memory = 5 << 20;
  o.cache_bytes = 2 << 20;
  RunningServer s("cpu?threads=1", o);
  Socket raw = s.raw_client(false);
  Message m;
  m.type = MsgType::Hello;
  Message r = ask(raw, m);
  ASSERT_EQ(r.type, MsgType::HelloOk) << r.text;
  const HelloOk& h = r.hello_ok;
  EXPECT_EQ(h.version, 3u);
  EXPECT_EQ(h.max_connections, 7u);
  EXPECT_EQ(h.idle_timeout_ms, 90000u);
  EXPECT_EQ(h.memory_bytes, uint64_t(1) << 20);
  EXPECT_EQ(h.total_memory_bytes, uint64_t(5) << 20);
  EXPECT_EQ(h.cache_bytes, uint64_t(2) << 20);
  EXPECT_LE(h.max_buffer_bytes, uint64_t(1) << 20);
  // The tcp:// backend takes the smaller of the two memory caps as its device's memory.
  o.max_total_memory = 1 << 19;
  RunningServer small("cpu?threads=1", o);
  EXPECT_EQ(open_backend(small.uri())->info().memory_bytes, uint64_t(1) << 19);
}

TEST(RpcConnections, AnOlderClientIsToldBothVersionsInOneLine) {
  RunningServer s;
  Socket raw = s.raw_client(false);
  Message m;
  m.type = MsgType::Hello;
  m.hello.version = 1;
  Message r = ask(raw, m);
  ASSERT_EQ(r.type, MsgType::Error);
  EXPECT_EQ(r.text.rfind("rpc: client speaks protocol 1, this server 3", 0), 0u) << r.text;
  EXPECT_EQ(r.text.find('\n'), std::string::npos);
}

// What this build says of a server of protocol version 1, whichever way that server answers:
// version 1 servers refuse a HELLO of another version with this ERROR.
TEST(RpcConnections, AnOlderServerIsNamedWithBothVersionsInOneLine) {
  Message refusal;
  refusal.type = MsgType::Error;
  refusal.text = "rpc: protocol version 3 not supported (this server speaks 1)";
  std::vector<uint8_t> unused = encode_frame(refusal);
  {
    testing::FakeServer v1(encode_frame(refusal), unused);
    std::string e = error_of([&] { open_backend(v1.uri()); });
    EXPECT_EQ(e, v1.uri() + ": server speaks protocol 1, this build 3");
  }
  // A server that answers HELLO_OK of its own version, in a layout this build cannot read.
  std::vector<uint8_t> f = {0, 0, 0, 0, uint8_t(MsgType::HelloOk), 1, 0, 0, 0};
  f.resize(f.size() + 40, 0);  // fields of some other layout
  uint32_t n = uint32_t(f.size() - 4);
  for (int i = 0; i < 4; ++i) f[i] = uint8_t(n >> (8 * i));
  testing::FakeServer v1(f, unused);
  std::string e = error_of([&] { open_backend(v1.uri()); });
  EXPECT_EQ(e, v1.uri() + ": server speaks protocol 1, this build 3");
}

}  // namespace
}  // namespace tapml::rpc

// The device server and the tcp:// backend in one process, on 127.0.0.1: results equal a
// local backend's, errors come back as messages, connections are isolated and capped, the
// hash probe skips uploads, and malformed traffic never takes the server down.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "backend/host_call.h"
#include "backends/builtin.h"
#include "backends/remote/tcp_backend.h"
#include "core/error.h"
#include "core/hash.h"
#include "rpc/server.h"
#include "rpc/socket.h"
#include "support/running_server.h"

namespace tapml::rpc {
namespace {

using testing::ask;
using testing::RunningServer;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

Tensor random_f32(Shape s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> v(size_t(s.numel()));
  for (float& x : v) x = u(rng);
  return Tensor::from_f32(s, v);
}

TEST(RpcServer, CallsGiveTheSameResultsAsTheLocalBackend) {
  RunningServer s;
  auto remote = open_backend(s.uri());
  auto local = open_backend("cpu?threads=1");
  EXPECT_EQ(remote->info().name, "tcp");
  EXPECT_NE(remote->info().device.find("cpu"), std::string::npos) << remote->info().device;
  std::vector<Tensor> in = {random_f32(Shape{3, 64}, 1), random_f32(Shape{48, 64}, 2)};
  HostCallResult a = run_host_call(*remote, Op::Matmul, {}, in);
  HostCallResult b = run_host_call(*local, Op::Matmul, {}, in);
  ASSERT_EQ(a.outputs.size(), 1u);
  EXPECT_TRUE(a.guards_intact[0]);
  EXPECT_EQ(std::memcmp(a.outputs[0].bytes(), b.outputs[0].bytes(), b.outputs[0].nbytes()), 0);
  // A kernel's own error reads exactly as it does locally.
  std::vector<int32_t> ids = {1, 600};
  std::vector<Tensor> emb = {random_f32(Shape{512, 8}, 3), Tensor::from_i32(Shape{2}, ids)};
  std::string local_err = error_of([&] { run_host_call(*local, Op::Embedding, {}, emb); });
  std::string remote_err = error_of([&] { run_host_call(*remote, Op::Embedding, {}, emb); });
  EXPECT_EQ(remote_err, local_err);
  // A large transfer crosses several frames.
  Tensor big = random_f32(Shape{5 << 20}, 4);
  BufferId id = remote->alloc(big.nbytes());
  remote->write(id, 0, big.bytes(), big.nbytes());
  std::vector<uint8_t> back(big.nbytes());
  remote->read(id, 0, back.data(), back.size());
  EXPECT_EQ(std::memcmp(back.data(), big.bytes(), back.size()), 0);
  remote->free(id);
}

TEST(RpcServer, BadRequestsAreErrorsAndTheConnectionCarriesOn) {
  RunningServer s;
  auto b = open_backend(s.uri());
  BufferId id = b->alloc(64);
  char buf[128] = {};
  EXPECT_NE(error_of([&] { b->read(id, 60, buf, 8); }).find("outside buffer"), std::string::npos);
  EXPECT_NE(error_of([&] { b->write(id, UINT64_MAX - 2, buf, 8); }).find("outside"),
            std::string::npos);
  EXPECT_NE(error_of([&] { b->read(999, 0, buf, 8); }).find("no buffer 999"), std::string::npos);
  EXPECT_NE(error_of([&] { b->alloc(0); }).find("0 bytes"), std::string::npos);
  OpCall c;
  c.op = Op::Matmul;
  c.inputs = {{id, 0, DType::F32, Shape{1, 4}}, {id, 16, DType::F32, Shape{2, 4}}};
  c.outputs = {{id, 48, DType::F32, Shape{1, 2}}};
  b->run(c);  // in bounds: fine
  c.outputs[0].offset = 60;
  EXPECT_NE(error_of([&] { b->run(c); }).find("outside its buffer"), std::string::npos);
  EXPECT_TRUE(b->supports(c).ok);  // a question about types, asked before buffers exist
  c.outputs[0] = {id, 48, DType::F32, Shape{1, 3}};
  EXPECT_NE(error_of([&] { b->run(c); }).find("the op gives"), std::string::npos);
  // An output written over an input of an op that is not in place is refused.
  c.outputs[0] = {id, 16, DType::F32, Shape{1, 2}};
  EXPECT_NE(error_of([&] { b->run(c); }).find("overlaps input w"), std::string::npos);
  c.outputs[0] = {id, 48, DType::F32, Shape{1, 2}};
  c.outputs[0].shape = Shape{1, 2};
  c.attrs.set("bogus", 1);
  EXPECT_NE(error_of([&] { b->run(c); }).find("unknown attribute"), std::string::npos);
  b->sync();
  b->free(id);
  EXPECT_NE(error_of([&] { b->free(id); }).find("no buffer"), std::string::npos);
}

TEST(RpcServer, ConnectionsAreIsolatedCappedAndFreedOnDisconnect) {
  ServerOptions o;
  o.max_memory = 1 << 20;
  RunningServer s("cpu?threads=1", o);
  auto a = open_backend(s.uri());
  auto b = open_backend(s.uri());
  BufferId ida = a->alloc(1000);
  // Ids are per connection: b cannot name a's buffer.
  char buf[8];
  EXPECT_NE(error_of([&] { b->read(ida, 0, buf, 8); }).find("no buffer"), std::string::npos);
  EXPECT_EQ(a->info().memory_bytes, uint64_t(1) << 20);
  EXPECT_NE(error_of([&] { a->alloc(1 << 20); }).find("memory cap"), std::string::npos);
  BufferId big = b->alloc((1 << 20) - 10);  // b's cap is its own
  b.reset();                                // its buffers go with it
  auto c = open_backend(s.uri());
  EXPECT_NO_THROW(c->free(c->alloc((1 << 20) - 10)));
  (void)big;
}

// --max-memory is per connection; --max-total-memory bounds all of them together, so a few
// clients cannot take the machine's memory between them.
TEST(RpcServer, AServerWideCapBoundsAllConnectionsTogether) {
  ServerOptions o;
  o.max_memory = 1 << 20;
  o.max_total_memory = 3 << 19;  // one and a half connections' worth
  RunningServer s("cpu?threads=1", o);
  auto a = open_backend(s.uri());
  auto b = open_backend(s.uri());
  BufferId ia = a->alloc(1 << 20);
  std::string e = error_of([&] { b->alloc(1 << 20); });
  EXPECT_NE(e.find("server's memory cap of 1572864 bytes (--max-total-memory"), std::string::npos)
      << e;
  EXPECT_NE(e.find("1048576 in use"), std::string::npos) << e;
  EXPECT_NE(e.find("connection's cap is 1048576 bytes (--max-memory"), std::string::npos) << e;
  BufferId ib = b->alloc(1 << 19);  // what is left fits
  EXPECT_EQ(s.server().stats().buffer_bytes, uint64_t(3) << 19);
  EXPECT_NE(error_of([&] { b->alloc(1); }).find("--max-total-memory"), std::string::npos);
  a->free(ia);
  EXPECT_NO_THROW(b->free(b->alloc(1 << 19)));
  ia = a->alloc(1 << 20);
  a.reset();  // a connection's buffers leave the total when it closes
  for (int i = 0; i < 100 && s.server().stats().buffer_bytes > (1u << 19); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(s.server().stats().buffer_bytes, uint64_t(1) << 19);
  auto c = open_backend(s.uri());
  EXPECT_NO_THROW(c->alloc(1 << 20));
  (void)ib;
}

// The hash-probe cache is memory too: it counts against the server's cap, and gives way
// (oldest first) when a buffer needs the room.
TEST(RpcServer, TheHashProbeCacheCountsAgainstTheServerCap) {
  ServerOptions o;
  o.max_memory = 1 << 20;
  o.max_total_memory = 1 << 20;
  o.cache_bytes = 1 << 20;
  RunningServer s("cpu?threads=1", o);
  auto a = open_backend(s.uri());
  Tensor w = random_f32(Shape{1 << 17}, 9);  // 512 KiB
  a->write(a->alloc(w.nbytes()), 0, w.bytes(), w.nbytes());
  ServerStats st = s.server().stats();
  EXPECT_EQ(st.buffer_bytes, w.nbytes());
  EXPECT_EQ(st.cache_bytes, w.nbytes());
  // Buffers (512 KiB) + cache (512 KiB) fill the cap; a new buffer evicts the cache.
  BufferId id = a->alloc(w.nbytes() * 3 / 4);
  st = s.server().stats();
  EXPECT_EQ(st.buffer_bytes, w.nbytes() * 7 / 4);
  EXPECT_EQ(st.cache_bytes, 0u);
  // With no room for a copy (128 KiB left), a write is not cached, and not refused.
  Tensor v = random_f32(Shape{1 << 16}, 10);  // 256 KiB
  EXPECT_NO_THROW(a->write(id, 0, v.bytes(), v.nbytes()));
  EXPECT_EQ(s.server().stats().cache_bytes, 0u);
  EXPECT_LE(s.server().stats().buffer_bytes + s.server().stats().cache_bytes, o.max_total_memory);
}

TEST(RpcServer, TokensAreCheckedAndExposureNeedsOne) {
  ServerOptions o;
  o.token = "s3cret";
  RunningServer s("cpu?threads=1", o);
  EXPECT_NO_THROW(open_backend(s.uri("?token=s3cret")));
  std::string e = error_of([&] { open_backend(s.uri("?token=wrong")); });
  EXPECT_NE(e.find("refused the connection: wrong token"), std::string::npos) << e;
  e = error_of([&] { open_backend(s.uri()); });
  EXPECT_NE(e.find("requires a token"), std::string::npos) << e;
  ServerOptions open;
  open.host = "0.0.0.0";
  e = error_of([&] { Server(open_backend("ref"), open); });
  EXPECT_NE(e.find("--token"), std::string::npos) << e;
  e = error_of([&] { open_backend(s.uri("?tokn=1")); });
  EXPECT_NE(e.find("unknown parameter 'tokn'"), std::string::npos) << e;
}

TEST(RpcServer, HashProbeSkipsBytesTheServerHolds) {
  RunningServer s;
  Tensor w = random_f32(Shape{64, 256}, 5);
  auto first = open_backend(s.uri());
  first->write(first->alloc(w.nbytes()), 0, w.bytes(), w.nbytes());
  EXPECT_EQ(tcp_transfer_stats(*first)->bytes_sent, w.nbytes());
  first.reset();
  auto second = open_backend(s.uri());
  BufferId id = second->alloc(w.nbytes() + 16);
  second->write(id, 16, w.bytes(), w.nbytes());
  EXPECT_EQ(tcp_transfer_stats(*second)->bytes_sent, 0u);
  EXPECT_EQ(tcp_transfer_stats(*second)->bytes_skipped, w.nbytes());
  std::vector<uint8_t> back(w.nbytes());
  second->read(id, 16, back.data(), back.size());
  EXPECT_EQ(std::memcmp(back.data(), w.bytes(), back.size()), 0);
  EXPECT_EQ(s.server().stats().cache_hits, 1u);

  // A client cannot plant bytes under someone else's hash: the server hashes them itself.
  Socket raw = connect_tcp("127.0.0.1", s.server().port(), 1000);
  Message m;
  m.type = MsgType::Hello;
  raw.send_frame(m, 1000);
  std::vector<uint8_t> p;
  raw.recv_frame(p, kMaxFrameBytes, 1000, 1000);
  m = {}, m.type = MsgType::Alloc, m.size = 8192;
  raw.send_frame(m, 1000);
  raw.recv_frame(p, kMaxFrameBytes, 1000, 1000);
  uint64_t rid = decode_message(p).id;
  m = {}, m.type = MsgType::CacheHashed, m.id = rid, m.size = 8192;
  Tensor other = random_f32(Shape{2048}, 6);
  m.hash = content_hash(other.bytes(), other.nbytes());
  raw.send_frame(m, 1000);
  raw.recv_frame(p, kMaxFrameBytes, 1000, 1000);
  Message r = decode_message(p);
  EXPECT_EQ(r.type, MsgType::Error);
  EXPECT_NE(r.text.find("do not have hash"), std::string::npos) << r.text;
}

TEST(RpcServer, ADeadOrSilentServerIsAQuickClearError) {
  auto s = std::make_unique<RunningServer>();
  auto b = open_backend(s->uri());
  BufferId id = b->alloc(64);
  std::string where = s->uri();
  s.reset();
  auto t0 = std::chrono::steady_clock::now();
  std::string e = error_of([&] { b->sync(); });
  EXPECT_NE(e.find(where + ": connection lost"), std::string::npos) << e;
  e = error_of([&] { b->alloc(8); });
  EXPECT_NE(e.find("connection lost"), std::string::npos) << e;
  EXPECT_NO_THROW(b->free(id));  // nothing left to free
  // A listener that accepts but never answers: the handshake times out.
  Socket silent = listen_tcp("127.0.0.1", 0);
  std::string uri = "tcp://127.0.0.1:" + std::to_string(bound_port(silent)) + "?timeout_ms=300";
  e = error_of([&] { open_backend(uri); });
  EXPECT_NE(e.find("timed out"), std::string::npos) << e;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
}

bool has_control_bytes(const std::string& s) {
  for (unsigned char ch : s)
    if (ch < 0x20 || ch == 0x7f) return true;
  return false;
}

TEST(RpcServer, NamesFromTheWireArePrintableInMessages) {
  RunningServer s;
  Socket raw = s.raw_client();
  // A RUN of op "add\0evil\x1b[2J", hand-encoded: the encoder only writes catalog names.
  std::vector<uint8_t> f = {0, 0, 0, 0, uint8_t(MsgType::Run)};
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) f.push_back(uint8_t(v >> (8 * i)));
  };
  const std::string name("add\0evil\x1b[2J", 12);
  u32(uint32_t(name.size()));
  f.insert(f.end(), name.begin(), name.end());
  for (int i = 0; i < 4; ++i) u32(0);  // attributes, inputs, outputs, site
  uint32_t n = uint32_t(f.size() - 4);
  for (int i = 0; i < 4; ++i) f[i] = uint8_t(n >> (8 * i));
  Message r = ask(raw, f);
  ASSERT_EQ(r.type, MsgType::Error);
  EXPECT_NE(r.text.find("unknown op 'add\\x00evil\\x1b[2J'"), std::string::npos) << r.text;
  EXPECT_FALSE(has_control_bytes(r.text)) << r.text;

  // An attribute name goes into the catalog's message; it arrives whole and escaped, and the
  // connection carries on.
  raw = s.raw_client();
  Message m;
  m.type = MsgType::Alloc, m.size = 256;
  uint64_t id = ask(raw, m).id;
  m = {}, m.type = MsgType::Run;
  m.call.op = Op::Add;
  m.call.inputs = {{id, 0, DType::F32, Shape{2, 4}}, {id, 32, DType::F32, Shape{2, 4}}};
  m.call.outputs = {{id, 64, DType::F32, Shape{2, 4}}};
  m.call.attrs.set(std::string("bo\0gus\n", 7), 1);
  r = ask(raw, m);
  ASSERT_EQ(r.type, MsgType::Error);
  EXPECT_NE(r.text.find("'bo\\x00gus\\x0a'"), std::string::npos) << r.text;
  EXPECT_FALSE(has_control_bytes(r.text)) << r.text;
  m.type = MsgType::Supports;
  r = ask(raw, m);
  ASSERT_EQ(r.type, MsgType::Support);
  EXPECT_FALSE(r.flag);
  EXPECT_NE(r.text.find("'bo\\x00gus\\x0a'"), std::string::npos) << r.text;
  m = {}, m.type = MsgType::Sync;
  EXPECT_EQ(ask(raw, m).type, MsgType::Ok);
}

TEST(RpcServer, TheClientEscapesWhatAServerSends) {
  Message hello;
  hello.type = MsgType::HelloOk;
  hello.hello_ok.name = "cpu\x1b]0;pwned\x07";
  hello.hello_ok.device = std::string("dev\0ice", 7);
  hello.hello_ok.ops = {"add"};
  Message error;
  error.type = MsgType::Error;
  error.text = std::string("boom\0hidden\x1b[2J", 15);
  testing::FakeServer fake(encode_frame(hello), encode_frame(error));
  auto b = open_backend(fake.uri());
  EXPECT_FALSE(has_control_bytes(b->info().device)) << b->info().device;
  EXPECT_NE(b->info().device.find("dev\\x00ice"), std::string::npos) << b->info().device;
  std::string e = error_of([&] { b->alloc(8); });
  EXPECT_EQ(e, "boom\\x00hidden\\x1b[2J");
}

// 1,000 random and malformed frames from many connections, then a well-behaved client.
TEST(RpcServer, SurvivesAThousandMalformedFrames) {
  ServerOptions o;
  o.max_memory = 1 << 20;  // a flipped ALLOC size must not make the server zero gigabytes
  RunningServer s("cpu?threads=1", o);
  std::mt19937 rng(42);
  auto hello = encode_frame([] {
    Message m;
    m.type = MsgType::Hello;
    return m;
  }());
  std::vector<std::vector<uint8_t>> valid;
  {
    Message m;
    m.type = MsgType::Alloc, m.size = 256;
    valid.push_back(encode_frame(m));
    m = {}, m.type = MsgType::Run;
    m.call.op = Op::Add;
    m.call.inputs = {{1, 0, DType::F32, Shape{2, 4}}, {1, 32, DType::F32, Shape{2, 4}}};
    m.call.outputs = {{1, 64, DType::F32, Shape{2, 4}}};
    valid.push_back(encode_frame(m));
    m = {}, m.type = MsgType::Read, m.id = 1, m.size = 16;
    valid.push_back(encode_frame(m));
    m = {}, m.type = MsgType::Ok;  // a reply sent the wrong way
    valid.push_back(encode_frame(m));
  }
  int sent = 0, kinds[6] = {};
  while (sent < 1000) {
    SCOPED_TRACE("frames sent: " + std::to_string(sent));
    Socket c;
    try {
      c = connect_tcp("127.0.0.1", s.server().port(), 5000);
    } catch (const Error& e) {
      FAIL() << e.what() << " after " << sent << " frames, " << s.server().stats().connections
             << " connections";
    }
    bool greeted = rng() % 2;
    if (greeted) c.send_all(hello.data(), hello.size(), 1000);
    // A burst of frames on one connection; the server may close it at the first bad one.
    for (int k = 0; k < 5 && sent < 1000; ++k, ++sent) {
      std::vector<uint8_t> f;
      int kind = int(rng() % 6);
      ++kinds[kind];
      if (kind == 0) {  // random bytes
        f.resize(rng() % 64);
        for (auto& x : f) x = uint8_t(rng());
      } else if (kind == 1) {  // a valid frame with bytes flipped
        f = valid[rng() % valid.size()];
        for (int j = 0; j < 3; ++j) f[4 + rng() % (f.size() - 4)] ^= uint8_t(1 + rng() % 255);
      } else if (kind == 2) {  // truncated: the length promises more than comes
        f = valid[rng() % valid.size()];
        f.resize(4 + rng() % (f.size() - 4));
      } else if (kind == 3) {  // oversized length
        uint32_t n = kMaxFrameBytes + 1 + rng() % 1000;
        f = {uint8_t(n), uint8_t(n >> 8), uint8_t(n >> 16), uint8_t(n >> 24), 1};
      } else {  // valid frames, possibly before HELLO or out of order
        f = valid[rng() % valid.size()];
      }
      try {
        c.send_all(f.data(), f.size(), 200);
      } catch (const Error&) {
        break;  // the server already hung up on this connection
      }
    }
    c.shutdown();
  }
  EXPECT_EQ(sent, 1000);
  // Give the server a moment to finish with the connections, then use it properly.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  auto b = open_backend(s.uri());
  std::vector<Tensor> in = {random_f32(Shape{2, 8}, 7), random_f32(Shape{2, 8}, 8)};
  HostCallResult r = run_host_call(*b, Op::Add, {}, in);
  EXPECT_FLOAT_EQ(r.outputs[0].to_f32()[3], in[0].to_f32()[3] + in[1].to_f32()[3]);
  // How many were seen depends on how much of each burst arrived before the server hung up.
  EXPECT_GT(s.server().stats().protocol_errors, 0u);
}

}  // namespace
}  // namespace tapml::rpc

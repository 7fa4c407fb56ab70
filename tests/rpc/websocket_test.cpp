// RFC 6455 pieces: SHA-1 and base64 against their published vectors, the handshake both
// ways, and frames over a socket pair: masking rules, fragmentation with a ping in between,
// size limits, bad opcodes and the closing handshake. Hostile frames are Errors.
#include "rpc/websocket.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <thread>

#include "support/errors.h"

namespace tapml::rpc {
namespace {

using testing::contains;
using testing::error_of;

std::string hex(std::span<const uint8_t> bytes) {
  std::string out;
  char b[3];
  for (uint8_t x : bytes) std::snprintf(b, 3, "%02x", x), out += b;
  return out;
}

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(WebSocketCrypto, Sha1MatchesFips180Vectors) {
  EXPECT_EQ(hex(sha1(bytes_of(""))), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(hex(sha1(bytes_of("abc"))), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(hex(sha1(bytes_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  EXPECT_EQ(hex(sha1(bytes_of(std::string(1000000, 'a')))),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  // 55, 56 and 64 bytes: the padding's edge cases.
  EXPECT_EQ(hex(sha1(bytes_of(std::string(55, 'a')))), "c1c8bbdc22796e28c0e15163d20899b65621d65a");
  EXPECT_EQ(hex(sha1(bytes_of(std::string(56, 'a')))), "c2db330f6083854c99d4b5bfb6e8f29f201be699");
  EXPECT_EQ(hex(sha1(bytes_of(std::string(64, 'a')))), "0098ba824b5c16427bd7a1122a5a442a25ec644d");
}

TEST(WebSocketCrypto, Base64AndTheAcceptKey) {
  EXPECT_EQ(base64_encode(bytes_of("")), "");
  EXPECT_EQ(base64_encode(bytes_of("f")), "Zg==");
  EXPECT_EQ(base64_encode(bytes_of("fo")), "Zm8=");
  EXPECT_EQ(base64_encode(bytes_of("foo")), "Zm9v");
  EXPECT_EQ(base64_encode(bytes_of("foob")), "Zm9vYg==");
  EXPECT_EQ(base64_encode(bytes_of("foobar")), "Zm9vYmFy");
  // RFC 6455, section 1.3.
  EXPECT_EQ(websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

std::pair<Socket, Socket> socket_pair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return {Socket(fds[0]), Socket(fds[1])};
}

// A frame as a peer would write it, with or without a mask.
std::vector<uint8_t> raw_frame(bool fin, uint8_t opcode, const std::string& payload, bool masked,
                               uint8_t extra_bits = 0) {
  std::vector<uint8_t> f = {uint8_t((fin ? 0x80 : 0) | extra_bits | opcode)};
  uint8_t m = masked ? 0x80 : 0;
  size_t n = payload.size();
  if (n < 126) {
    f.push_back(uint8_t(m | n));
  } else if (n < 65536) {
    f.push_back(uint8_t(m | 126));
    f.push_back(uint8_t(n >> 8)), f.push_back(uint8_t(n));
  } else {
    f.push_back(uint8_t(m | 127));
    for (int i = 7; i >= 0; --i) f.push_back(uint8_t(uint64_t(n) >> (8 * i)));
  }
  uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
  if (masked) f.insert(f.end(), key, key + 4);
  for (size_t i = 0; i < n; ++i) f.push_back(uint8_t(payload[i]) ^ (masked ? key[i & 3] : 0));
  return f;
}

struct Pair {
  WebSocket server, client;
};

Pair connected(size_t limit = 1 << 20) {
  auto [a, b] = socket_pair();
  return {WebSocket(std::move(a), WebSocket::Role::Server, limit),
          WebSocket(std::move(b), WebSocket::Role::Client, limit)};
}

// The server side of a pair whose client end is a raw socket.
struct RawPair {
  WebSocket server;
  Socket raw;
};
RawPair raw_client(size_t limit = 1 << 20) {
  auto [a, b] = socket_pair();
  return {WebSocket(std::move(a), WebSocket::Role::Server, limit), std::move(b)};
}

TEST(WebSocketFrames, MessagesOfEverySizeCrossBothWays) {
  Pair p = connected();
  for (size_t n : {size_t(0), size_t(5), size_t(125), size_t(126), size_t(65535), size_t(70000)}) {
    std::vector<uint8_t> data(n);
    for (size_t i = 0; i < n; ++i) data[i] = uint8_t(i * 7);
    std::thread t([&] { p.client.send_binary(data, 1000); });
    WebSocket::Message m = p.server.receive(1000, 1000);
    t.join();
    EXPECT_EQ(m.kind, WebSocket::Kind::Binary);
    EXPECT_EQ(m.data, data) << n;
    std::thread u([&] { p.server.send_binary(data, 1000); });
    m = p.client.receive(1000, 1000);
    u.join();
    EXPECT_EQ(m.data, data) << n;
  }
  p.server.send_text("{\"type\":\"hello\"}", 1000);
  WebSocket::Message m = p.client.receive(1000, 1000);
  EXPECT_EQ(m.kind, WebSocket::Kind::Text);
  EXPECT_EQ(m.text(), "{\"type\":\"hello\"}");
  // Parts of one message arrive as one.
  std::string a = "head", b = "body";
  p.client.send(WebSocket::Kind::Binary, {bytes_of(a), bytes_of(b)}, 1000);
  EXPECT_EQ(p.server.receive(1000, 1000).text(), "headbody");
}

TEST(WebSocketFrames, FragmentsAreReassembledAndPingsAnsweredBetweenThem) {
  auto [server, raw] = raw_client();
  for (auto& f : {raw_frame(false, 1, "Hel", true), raw_frame(true, 9, "hi", true),
                  raw_frame(false, 0, "lo, ", true), raw_frame(true, 0, "world", true)})
    raw.send_all(f.data(), f.size(), 1000);
  WebSocket::Message m = server.receive(1000, 1000);
  EXPECT_EQ(m.kind, WebSocket::Kind::Text);
  EXPECT_EQ(m.text(), "Hello, world");
  // The pong came back unmasked, with the ping's bytes.
  uint8_t pong[4];
  raw.recv_all(pong, 4, 1000);
  EXPECT_EQ(pong[0], 0x8a);
  EXPECT_EQ(pong[1], 2);
  EXPECT_EQ(std::string(pong + 2, pong + 4), "hi");
}

TEST(WebSocketFrames, NothingArrivingIsATimeoutThatCanBeRetried) {
  Pair p = connected();
  EXPECT_THROW(p.server.receive(50, 50), Timeout);
  p.client.send_text("later", 1000);
  EXPECT_EQ(p.server.receive(1000, 1000).text(), "later");
}

std::string server_error(const std::vector<std::vector<uint8_t>>& frames, size_t limit = 1000) {
  auto [server, raw] = raw_client(limit);
  for (auto& f : frames) raw.send_all(f.data(), f.size(), 1000);
  return error_of([&] { server.receive(1000, 1000); });
}

TEST(WebSocketFrames, HostileFramesAreErrors) {
  EXPECT_TRUE(contains(server_error({raw_frame(true, 2, "x", false)}), "unmasked"));
  EXPECT_TRUE(contains(server_error({raw_frame(true, 3, "x", true)}), "unknown opcode 3"));
  EXPECT_TRUE(contains(server_error({raw_frame(true, 11, "", true)}), "unknown opcode 11"));
  EXPECT_TRUE(contains(server_error({raw_frame(true, 2, "x", true, 0x40)}), "reserved bits"));
  EXPECT_TRUE(contains(server_error({raw_frame(true, 9, std::string(126, 'p'), true)}),
                       "control frame of 126 bytes"));
  EXPECT_TRUE(contains(server_error({raw_frame(false, 9, "p", true)}), "fragmented"));
  EXPECT_TRUE(contains(server_error({raw_frame(true, 0, "x", true)}), "no message begun"));
  EXPECT_TRUE(
      contains(server_error({raw_frame(false, 2, "x", true), raw_frame(true, 2, "y", true)}),
               "before the fragmented one"));
  EXPECT_TRUE(contains(server_error({raw_frame(true, 2, std::string(1001, 'x'), true)}),
                       "exceeds the limit of 1000"));
  // The limit holds for the message, not only for each fragment.
  EXPECT_TRUE(contains(server_error({raw_frame(false, 2, std::string(600, 'x'), true),
                                     raw_frame(true, 0, std::string(600, 'x'), true)}),
                       "exceeds the limit"));
  // A client refuses masked frames from a server.
  auto [a, b] = socket_pair();
  WebSocket client(std::move(b), WebSocket::Role::Client, 1000);
  auto f = raw_frame(true, 2, "x", true);
  a.send_all(f.data(), f.size(), 1000);
  EXPECT_TRUE(contains(error_of([&] { client.receive(1000, 1000); }), "masked WebSocket frame"));
}

TEST(WebSocketFrames, CloseIsAnsweredAndEndsTheStream) {
  Pair p = connected();
  p.client.send_close(1001, "going away", 1000);
  WebSocket::Message m = p.server.receive(1000, 1000);
  EXPECT_EQ(m.kind, WebSocket::Kind::Closed);
  EXPECT_EQ(m.close_code, 1001);
  EXPECT_EQ(m.text(), "going away");
  m = p.client.receive(1000, 1000);  // the server's answer
  EXPECT_EQ(m.kind, WebSocket::Kind::Closed);
  EXPECT_EQ(m.close_code, 1001);
  EXPECT_THROW(p.server.send_text("after", 100), Error);
  // A peer that just hangs up, between messages, is a close too (1006).
  Pair q = connected();
  q.client.socket().close();
  EXPECT_EQ(q.server.receive(1000, 1000).close_code, 1006);
}

TEST(WebSocketHttp, RequestHeadIsParsedAndBounded) {
  auto [a, b] = socket_pair();
  std::string req =
      "GET /ws/client?name=my%20tab&token=a%2Bb&wait_ms=5 HTTP/1.1\r\nHost: h:1\r\n"
      "X-A: 1\r\nx-a: 2\r\n\r\nNEXT";
  b.send_all(req.data(), req.size(), 1000);
  HttpRequest r = read_http_request(a, 1000);
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/ws/client");
  EXPECT_EQ(r.query["name"], "my tab");
  EXPECT_EQ(r.query["token"], "a+b");
  EXPECT_EQ(r.header("host"), "h:1");
  EXPECT_EQ(r.header("x-a"), "1, 2");
  char rest[4];
  a.recv_all(rest, 4, 1000);  // nothing past the blank line was taken
  EXPECT_EQ(std::string(rest, 4), "NEXT");

  auto [c, d] = socket_pair();
  std::string big = "GET / HTTP/1.1\r\nX: " + std::string(20000, 'a');
  std::thread t([&] {
    try {
      d.send_all(big.data(), big.size(), 1000);
    } catch (const Error&) {
    }
  });
  EXPECT_TRUE(contains(error_of([&] { read_http_request(c, 1000); }), "longer than 16 KiB"));
  t.join();
  auto [e, f] = socket_pair();
  f.send_all("GET / HTTP/1.1\r\n", 16, 1000);
  EXPECT_THROW(read_http_request(e, 100), Timeout);
  auto [g, h] = socket_pair();
  h.send_all("HELLO\r\n\r\n", 9, 1000);
  EXPECT_TRUE(contains(error_of([&] { read_http_request(g, 100); }), "malformed"));
}

TEST(WebSocketHttp, HandshakeBothWaysAndRefusals) {
  auto [a, b] = socket_pair();
  std::thread server([&] {
    HttpRequest r = read_http_request(a, 1000);
    accept_websocket(a, r, 1000);
    WebSocket ws(std::move(a), WebSocket::Role::Server, 1000);
    ws.send_text("right behind the handshake", 1000);
  });
  connect_websocket(b, "h:1", "/ws/device?name=x", 1000);
  WebSocket client(std::move(b), WebSocket::Role::Client, 1000);
  EXPECT_EQ(client.receive(1000, 1000).text(), "right behind the handshake");
  server.join();

  auto [c, d] = socket_pair();
  std::thread refuse([&] {
    read_http_request(c, 1000);
    send_http_error(c, 403, "wrong or missing token", 1000);
  });
  EXPECT_EQ(error_of([&] { connect_websocket(d, "h:1", "/", 1000); }),
            "HTTP 403: wrong or missing token");
  refuse.join();

  auto [e, f] = socket_pair();
  std::string plain = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
  f.send_all(plain.data(), plain.size(), 1000);
  HttpRequest r = read_http_request(e, 1000);
  EXPECT_TRUE(contains(error_of([&] { accept_websocket(e, r, 1000); }), "Upgrade: websocket"));
}

}  // namespace
}  // namespace tapml::rpc

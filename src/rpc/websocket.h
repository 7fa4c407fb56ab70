// WebSocket (RFC 6455) over rpc::Socket, blocking, with every wait bounded by a deadline: the
// transport between TapML and a WebGPU device in a browser tab or Node (docs/protocol.md,
// "WebSocket transport and the browser relay"), plus the little HTTP/1.1 that comes with it.
//
// Contract: hostile or broken input (an oversized header block, a frame with reserved bits or
// an unknown opcode, an unmasked frame from a client, a masked one from a server, a control
// frame over 125 bytes or fragmented, a message over the size limit, a stray continuation)
// throws tapml::Error naming the problem; the caller ends that connection only. No extensions
// or subprotocols are negotiated.
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rpc/socket.h"

namespace tapml::rpc {

// SHA-1 (FIPS 180-4) of `data`: 20 bytes. Only for the WebSocket handshake, not for security.
std::array<uint8_t, 20> sha1(std::span<const uint8_t> data);
std::string base64_encode(std::span<const uint8_t> data);
// The Sec-WebSocket-Accept value for a Sec-WebSocket-Key.
std::string websocket_accept(std::string_view key);

// The head of an HTTP/1.1 request. Header names are lowercased; a repeated header keeps the
// values joined with ", ".
struct HttpRequest {
  std::string method, target, version;
  std::map<std::string, std::string> headers;
  std::string path;                          // target up to '?', percent-decoded
  std::map<std::string, std::string> query;  // percent-decoded; a repeated key keeps the first
  std::string header(const std::string& lower_name) const;
};
constexpr size_t kMaxHttpHead = 16 << 10;

// Reads a request head (request line and headers, up to the blank line) of at most 16 KiB,
// all within `timeout_ms`; consumes nothing past the blank line. Throws Error for a malformed
// or oversized head, a timeout, or the peer closing.
HttpRequest read_http_request(Socket& s, int timeout_ms);
// Percent-decoding for URL components ('+' stays '+'); throws Error on a bad escape.
std::string url_decode(std::string_view text);
std::string url_encode(std::string_view text);
// Sends a whole response ("HTTP/1.1 <status> <reason>", Content-Type, Content-Length,
// Connection: close, Cache-Control: no-store).
void send_http_response(Socket& s, int status, const std::string& content_type,
                        std::span<const uint8_t> body, int timeout_ms);
// A refusal: `status` with a one-line text/plain body (the line plus "\n").
void send_http_error(Socket& s, int status, const std::string& line, int timeout_ms);

class WebSocket {
 public:
  enum class Role { Server, Client };
  enum class Kind { Binary, Text, Closed };
  struct Message {
    Kind kind = Kind::Closed;
    std::vector<uint8_t> data;  // the payload; for Closed, the peer's reason text
    uint16_t close_code = 0;    // Closed: the peer's status code (1005 when it gave none)
    std::string text() const { return std::string(data.begin(), data.end()); }
  };

  // Wraps a socket whose handshake is done. A server refuses unmasked frames and sends its
  // own unmasked; a client masks its frames and refuses masked ones.
  WebSocket(Socket socket, Role role, size_t max_message_bytes);

  // Sends one message made of the concatenated parts (so a frame header and bulk bytes need
  // not be copied together). Thread-safe with respect to other sends.
  void send(Kind kind, std::initializer_list<std::span<const uint8_t>> parts, int timeout_ms);
  void send_binary(std::span<const uint8_t> data, int timeout_ms) {
    send(Kind::Binary, {data}, timeout_ms);
  }
  void send_text(std::string_view text, int timeout_ms);
  void send_ping(int timeout_ms);
  // Sends a close frame once (later calls do nothing); errors are swallowed: it is a goodbye.
  void send_close(uint16_t code, std::string_view reason, int timeout_ms);

  // The next data message. Pings are answered, pongs noted; a close is answered and returns
  // Kind::Closed (as does a clean end of stream at a message boundary). Throws Timeout when
  // no frame started within `first_byte_timeout_ms` (-1: forever) and no message is half
  // received, so the call can be repeated; any other failure throws Error and leaves the
  // connection unusable. `timeout_ms` bounds the rest of a frame once it has begun.
  Message receive(int first_byte_timeout_ms, int timeout_ms);

  // When a frame (of any kind) last arrived; for liveness checks by another thread.
  std::chrono::steady_clock::time_point last_heard() const;
  // True when bytes are waiting to be read (without blocking).
  bool readable() const;
  Socket& socket() { return socket_; }
  void shutdown() { socket_.shutdown(); }

 private:
  void send_frame_locked(uint8_t opcode, std::initializer_list<std::span<const uint8_t>> parts,
                         int timeout_ms);

  Socket socket_;
  Role role_;
  size_t max_message_bytes_;
  std::mutex send_mutex_;
  bool close_sent_ = false;  // guarded by send_mutex_
  std::mt19937 rng_;         // mask keys (guarded by send_mutex_)
  // A fragmented message being received: its opcode (0: none) and bytes so far.
  uint8_t partial_opcode_ = 0;
  std::vector<uint8_t> partial_;
  std::atomic<int64_t> last_heard_ns_;
};

// A WebSocket handshake as the server: checks the request (GET, Upgrade: websocket,
// Connection: upgrade, Sec-WebSocket-Version 13, a 16-byte base64 key) and answers 101.
// Throws Error naming what is missing (after answering 400).
void accept_websocket(Socket& s, const HttpRequest& request, int timeout_ms);
// A WebSocket handshake as the client: sends GET `target` to `host_header` and checks the
// 101 answer and its Sec-WebSocket-Accept. A refusal (any other status) throws Error with the
// status and the first line of the body, e.g. "HTTP 403: wrong token".
void connect_websocket(Socket& s, const std::string& host_header, const std::string& target,
                       int timeout_ms);

}  // namespace tapml::rpc

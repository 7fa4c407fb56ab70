#include "rpc/websocket.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace tapml::rpc {

namespace {

using Clock = std::chrono::steady_clock;

uint32_t rotl(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
  return b == std::string_view::npos ? "" : std::string(s.substr(b, e - b + 1));
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// The head of an HTTP message, up to and including the blank line, read within `timeout_ms`.
// Bytes are peeked before they are taken, so nothing after the head is consumed: a WebSocket
// peer may send its first frame right behind the handshake.
std::string read_http_head(Socket& s, int timeout_ms) {
  TAPML_REQUIRE(s.open(), "socket is closed");
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string head;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{s.fd(), POLLIN, 0};
    int r = ::poll(&p, 1, std::max<int>(0, int(left.count())));
    if (r == 0) throw Timeout("timed out waiting for the HTTP request head");
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(std::string("poll failed: ") + std::strerror(errno));
    }
    size_t want = std::min(sizeof buf, kMaxHttpHead - head.size());
    ssize_t n = ::recv(s.fd(), buf, want, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      throw Error(std::string("receive failed: ") + std::strerror(errno));
    }
    if (n == 0) throw Error("connection closed before the end of the HTTP head");
    size_t from = head.size() >= 3 ? head.size() - 3 : 0;
    std::string seen = head + std::string(buf, size_t(n));
    size_t end = seen.find("\r\n\r\n", from);
    size_t take = end == std::string::npos ? size_t(n) : end + 4 - head.size();
    s.recv_all(buf, take, 1000);
    head.append(buf, take);
    if (end != std::string::npos) return head;
    TAPML_REQUIRE(head.size() < kMaxHttpHead, "HTTP head longer than 16 KiB");
  }
}

// Splits a head into its first line and lowercased headers.
std::string parse_head(const std::string& head, std::map<std::string, std::string>& headers) {
  size_t eol = head.find("\r\n");
  std::string first = head.substr(0, eol);
  size_t pos = eol + 2;
  while (pos < head.size()) {
    size_t next = head.find("\r\n", pos);
    if (next == pos) break;
    std::string line = head.substr(pos, next - pos);
    pos = next + 2;
    size_t colon = line.find(':');
    TAPML_REQUIRE(colon != std::string::npos && colon > 0,
                  "malformed HTTP header line (no name and colon)");
    std::string name = lower(line.substr(0, colon));
    std::string value = trim(std::string_view(line).substr(colon + 1));
    auto [it, fresh] = headers.emplace(name, value);
    if (!fresh) it->second += ", " + value;
  }
  return first;
}

bool has_token(const std::string& list, const std::string& token) {
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (lower(trim(std::string_view(list).substr(start, comma - start))) == token) return true;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return false;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::array<uint8_t, 20> sha1(std::span<const uint8_t> data) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::vector<uint8_t> m(data.begin(), data.end());
  uint64_t bits = uint64_t(data.size()) * 8;
  m.push_back(0x80);
  while (m.size() % 64 != 56) m.push_back(0);
  for (int i = 7; i >= 0; --i) m.push_back(uint8_t(bits >> (8 * i)));
  for (size_t block = 0; block < m.size(); block += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; ++i)
      w[i] = uint32_t(m[block + 4 * i]) << 24 | uint32_t(m[block + 4 * i + 1]) << 16 |
             uint32_t(m[block + 4 * i + 2]) << 8 | uint32_t(m[block + 4 * i + 3]);
    for (int i = 16; i < 80; ++i) w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      uint32_t f, k;
      if (i < 20)
        f = (b & c) | (~b & d), k = 0x5A827999;
      else if (i < 40)
        f = b ^ c ^ d, k = 0x6ED9EBA1;
      else if (i < 60)
        f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
      else
        f = b ^ c ^ d, k = 0xCA62C1D6;
      uint32_t t = rotl(a, 5) + f + e + k + w[i];
      e = d, d = c, c = rotl(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  std::array<uint8_t, 20> out{};
  for (int i = 0; i < 20; ++i) out[i] = uint8_t(h[i / 4] >> (24 - 8 * (i % 4)));
  return out;
}

std::string base64_encode(std::span<const uint8_t> data) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t i = 0; i < data.size(); i += 3) {
    uint32_t v = uint32_t(data[i]) << 16;
    if (i + 1 < data.size()) v |= uint32_t(data[i + 1]) << 8;
    if (i + 2 < data.size()) v |= data[i + 2];
    out += abc[v >> 18 & 63];
    out += abc[v >> 12 & 63];
    out += i + 1 < data.size() ? abc[v >> 6 & 63] : '=';
    out += i + 2 < data.size() ? abc[v & 63] : '=';
  }
  return out;
}

std::string websocket_accept(std::string_view key) {
  std::string text = std::string(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  auto digest = sha1({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  return base64_encode(digest);
}

std::string url_decode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    int hi = i + 2 < text.size() ? hex_value(text[i + 1]) : -1;
    int lo = hi >= 0 ? hex_value(text[i + 2]) : -1;
    TAPML_REQUIRE(lo >= 0, "bad percent escape in URL");
    out += char(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::string url_encode(std::string_view text) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += char(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string HttpRequest::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

HttpRequest read_http_request(Socket& s, int timeout_ms) {
  std::string head = read_http_head(s, timeout_ms);
  HttpRequest r;
  std::string first = parse_head(head, r.headers);
  size_t sp1 = first.find(' '), sp2 = first.rfind(' ');
  TAPML_REQUIRE(sp1 != std::string::npos && sp2 > sp1,
                "malformed HTTP request line (expected METHOD TARGET VERSION)");
  r.method = first.substr(0, sp1);
  r.target = first.substr(sp1 + 1, sp2 - sp1 - 1);
  r.version = first.substr(sp2 + 1);
  TAPML_REQUIRE(r.version.rfind("HTTP/1.", 0) == 0, "not an HTTP/1.x request");
  TAPML_REQUIRE(!r.target.empty() && r.target[0] == '/', "HTTP request target is not a path");
  size_t q = r.target.find('?');
  r.path = url_decode(r.target.substr(0, q));
  if (q != std::string::npos) {
    std::string query = r.target.substr(q + 1);
    size_t start = 0;
    while (start < query.size()) {
      size_t amp = query.find('&', start);
      std::string kv = query.substr(start, amp == std::string::npos ? amp : amp - start);
      start = amp == std::string::npos ? query.size() : amp + 1;
      if (kv.empty()) continue;
      size_t eq = kv.find('=');
      std::string key = url_decode(kv.substr(0, eq));
      std::string value = eq == std::string::npos ? "" : url_decode(kv.substr(eq + 1));
      r.query.emplace(key, value);
    }
  }
  return r;
}

void send_http_response(Socket& s, int status, const std::string& content_type,
                        std::span<const uint8_t> body, int timeout_ms) {
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) +
                     "\r\nContent-Type: " + content_type +
                     "\r\nContent-Length: " + std::to_string(body.size()) +
                     "\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
  s.send_all(head.data(), head.size(), timeout_ms);
  if (!body.empty()) s.send_all(body.data(), body.size(), timeout_ms);
}

void send_http_error(Socket& s, int status, const std::string& line, int timeout_ms) {
  std::string body = line + "\n";
  send_http_response(s, status, "text/plain; charset=utf-8",
                     {reinterpret_cast<const uint8_t*>(body.data()), body.size()}, timeout_ms);
}

void accept_websocket(Socket& s, const HttpRequest& r, int timeout_ms) {
  std::string problem;
  std::string key = r.header("sec-websocket-key");
  if (r.method != "GET")
    problem = "a WebSocket handshake must be a GET";
  else if (!has_token(r.header("upgrade"), "websocket"))
    problem = "missing Upgrade: websocket";
  else if (!has_token(r.header("connection"), "upgrade"))
    problem = "missing Connection: Upgrade";
  else if (r.header("sec-websocket-version") != "13")
    problem = "Sec-WebSocket-Version must be 13";
  else if (key.size() != 24 || key.substr(22) != "==")
    problem = "bad Sec-WebSocket-Key";
  if (!problem.empty()) {
    try {
      send_http_error(s, 400, problem, timeout_ms);
    } catch (const Error&) {
    }
    throw Error("WebSocket handshake refused: " + problem);
  }
  std::string head =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      websocket_accept(key) + "\r\n\r\n";
  s.send_all(head.data(), head.size(), timeout_ms);
}

void connect_websocket(Socket& s, const std::string& host_header, const std::string& target,
                       int timeout_ms) {
  std::random_device rd;
  std::array<uint8_t, 16> nonce{};
  for (auto& b : nonce) b = uint8_t(rd());
  std::string key = base64_encode(nonce);
  std::string request = "GET " + target + " HTTP/1.1\r\nHost: " + host_header +
                        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: " +
                        key + "\r\nSec-WebSocket-Version: 13\r\n\r\n";
  s.send_all(request.data(), request.size(), timeout_ms);
  std::map<std::string, std::string> headers;
  std::string first = parse_head(read_http_head(s, timeout_ms), headers);
  TAPML_REQUIRE(first.rfind("HTTP/1.", 0) == 0 && first.size() >= 12,
                "not an HTTP response to the WebSocket handshake");
  int status = std::atoi(first.substr(9, 3).c_str());
  if (status != 101) {
    std::string body;
    auto it = headers.find("content-length");
    size_t n = it == headers.end() ? 0 : size_t(std::min(4096L, std::atol(it->second.c_str())));
    body.resize(n);
    try {
      if (n) s.recv_all(body.data(), n, timeout_ms);
    } catch (const Error&) {
      body.clear();
    }
    body = body.substr(0, body.find('\n'));
    throw Error("HTTP " + std::to_string(status) + (body.empty() ? "" : ": " + body));
  }
  auto accept = headers.find("sec-websocket-accept");
  TAPML_REQUIRE(accept != headers.end() && accept->second == websocket_accept(key),
                "the server's Sec-WebSocket-Accept does not match the key");
}

WebSocket::WebSocket(Socket socket, Role role, size_t max_message_bytes)
    : socket_(std::move(socket)),
      role_(role),
      max_message_bytes_(max_message_bytes),
      rng_(std::random_device{}()),
      last_heard_ns_(now_ns()) {}

std::chrono::steady_clock::time_point WebSocket::last_heard() const {
  return Clock::time_point(std::chrono::nanoseconds(last_heard_ns_.load()));
}

bool WebSocket::readable() const {
  if (!socket_.open()) return false;
  pollfd p{socket_.fd(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

void WebSocket::send(Kind kind, std::initializer_list<std::span<const uint8_t>> parts,
                     int timeout_ms) {
  TAPML_REQUIRE(kind != Kind::Closed, "use send_close to close a WebSocket");
  std::lock_guard lock(send_mutex_);
  TAPML_REQUIRE(!close_sent_, "WebSocket is closing");
  send_frame_locked(kind == Kind::Binary ? 2 : 1, parts, timeout_ms);
}

void WebSocket::send_text(std::string_view text, int timeout_ms) {
  send(Kind::Text, {{reinterpret_cast<const uint8_t*>(text.data()), text.size()}}, timeout_ms);
}

void WebSocket::send_ping(int timeout_ms) {
  std::lock_guard lock(send_mutex_);
  if (!close_sent_) send_frame_locked(9, {}, timeout_ms);
}

void WebSocket::send_close(uint16_t code, std::string_view reason, int timeout_ms) {
  std::lock_guard lock(send_mutex_);
  if (close_sent_ || !socket_.open()) return;
  close_sent_ = true;
  std::vector<uint8_t> body = {uint8_t(code >> 8), uint8_t(code)};
  body.insert(body.end(), reason.begin(), reason.begin() + std::min<size_t>(reason.size(), 123));
  try {
    send_frame_locked(8, {body}, timeout_ms);
  } catch (const Error&) {
  }
}

void WebSocket::send_frame_locked(uint8_t opcode,
                                  std::initializer_list<std::span<const uint8_t>> parts,
                                  int timeout_ms) {
  uint64_t n = 0;
  for (auto& p : parts) n += p.size();
  uint8_t head[14];
  size_t h = 0;
  head[h++] = uint8_t(0x80 | opcode);
  const uint8_t mask_bit = role_ == Role::Client ? 0x80 : 0;
  if (n < 126) {
    head[h++] = uint8_t(mask_bit | n);
  } else if (n < 65536) {
    head[h++] = uint8_t(mask_bit | 126);
    head[h++] = uint8_t(n >> 8), head[h++] = uint8_t(n);
  } else {
    head[h++] = uint8_t(mask_bit | 127);
    for (int i = 7; i >= 0; --i) head[h++] = uint8_t(n >> (8 * i));
  }
  uint8_t key[4] = {0, 0, 0, 0};
  if (role_ == Role::Client) {
    uint32_t k = rng_();
    for (int i = 0; i < 4; ++i) head[h++] = key[i] = uint8_t(k >> (8 * i));
  }
  socket_.send_all(head, h, timeout_ms);
  if (role_ == Role::Server) {
    for (auto& p : parts)
      if (!p.empty()) socket_.send_all(p.data(), p.size(), timeout_ms);
    return;
  }
  // A client masks every byte (RFC 6455 5.3); in chunks, so bulk data is not copied whole.
  std::vector<uint8_t> chunk;
  uint64_t at = 0;
  for (auto& p : parts) {
    for (size_t i = 0; i < p.size();) {
      size_t len = std::min<size_t>(p.size() - i, 64 << 10);
      chunk.resize(len);
      for (size_t j = 0; j < len; ++j) chunk[j] = p[i + j] ^ key[(at + j) & 3];
      socket_.send_all(chunk.data(), len, timeout_ms);
      i += len, at += len;
    }
  }
}

WebSocket::Message WebSocket::receive(int first_byte_timeout_ms, int timeout_ms) {
  for (;;) {
    uint8_t head[2];
    // A frame that has not begun can be waited for again; one half read cannot.
    int first = partial_opcode_ ? timeout_ms : first_byte_timeout_ms;
    if (!socket_.recv_all(head, 1, first, true)) {
      TAPML_REQUIRE(partial_opcode_ == 0, "connection closed in the middle of a WebSocket message");
      Message m;
      m.close_code = 1006;
      return m;
    }
    std::vector<uint8_t> payload;
    uint8_t opcode = 0;
    bool fin = false;
    try {
      socket_.recv_all(head + 1, 1, timeout_ms);
      fin = head[0] & 0x80;
      opcode = head[0] & 0x0f;
      TAPML_REQUIRE((head[0] & 0x70) == 0,
                    "WebSocket frame with reserved bits set (no extension "
                    "was negotiated)");
      TAPML_REQUIRE(opcode <= 2 || (opcode >= 8 && opcode <= 10),
                    "WebSocket frame with unknown opcode " + std::to_string(opcode));
      bool masked = head[1] & 0x80;
      if (role_ == Role::Server)
        TAPML_REQUIRE(masked, "unmasked WebSocket frame from a client (RFC 6455 5.1)");
      else
        TAPML_REQUIRE(!masked, "masked WebSocket frame from a server (RFC 6455 5.1)");
      uint64_t n = head[1] & 0x7f;
      if (n == 126) {
        uint8_t b[2];
        socket_.recv_all(b, 2, timeout_ms);
        n = uint64_t(b[0]) << 8 | b[1];
      } else if (n == 127) {
        uint8_t b[8];
        socket_.recv_all(b, 8, timeout_ms);
        n = 0;
        for (int i = 0; i < 8; ++i) n = n << 8 | b[i];
        TAPML_REQUIRE(!(n >> 63), "WebSocket frame length with the top bit set");
      }
      bool control = opcode >= 8;
      if (control) {
        TAPML_REQUIRE(fin, "fragmented WebSocket control frame");
        TAPML_REQUIRE(n <= 125,
                      "WebSocket control frame of " + std::to_string(n) + " bytes (at most 125)");
      } else {
        uint64_t total = (opcode == 0 ? partial_.size() : 0) + n;
        TAPML_REQUIRE(total <= max_message_bytes_,
                      "WebSocket message of at least " + std::to_string(total) +
                          " bytes exceeds the limit of " + std::to_string(max_message_bytes_));
        if (opcode == 0)
          TAPML_REQUIRE(partial_opcode_ != 0, "WebSocket continuation frame with no message begun");
        else
          TAPML_REQUIRE(partial_opcode_ == 0,
                        "new WebSocket message before the fragmented one was finished");
      }
      uint8_t key[4] = {0, 0, 0, 0};
      if (masked) socket_.recv_all(key, 4, timeout_ms);
      payload.resize(size_t(n));
      if (n) socket_.recv_all(payload.data(), size_t(n), timeout_ms);
      if (masked)
        for (size_t i = 0; i < payload.size(); ++i) payload[i] ^= key[i & 3];
    } catch (const Timeout& e) {
      // Past the first byte, a timeout leaves the stream mid-frame: not resumable.
      throw Error(std::string(e.what()) + " in the middle of a WebSocket frame");
    }
    last_heard_ns_ = now_ns();
    if (opcode == 9) {  // ping: answer with the same bytes
      std::lock_guard lock(send_mutex_);
      if (!close_sent_) send_frame_locked(10, {payload}, timeout_ms);
      continue;
    }
    if (opcode == 10) continue;  // pong: noted in last_heard
    if (opcode == 8) {
      Message m;
      m.close_code = payload.size() >= 2 ? uint16_t(payload[0] << 8 | payload[1]) : 1005;
      TAPML_REQUIRE(payload.size() != 1, "WebSocket close frame with a 1-byte body");
      if (payload.size() > 2) m.data.assign(payload.begin() + 2, payload.end());
      send_close(m.close_code == 1005 ? 1000 : m.close_code, "", timeout_ms);
      return m;
    }
    if (opcode != 0) partial_opcode_ = opcode;
    if (partial_.empty())
      partial_ = std::move(payload);
    else
      partial_.insert(partial_.end(), payload.begin(), payload.end());
    if (!fin) continue;
    Message m;
    m.kind = partial_opcode_ == 2 ? Kind::Binary : Kind::Text;
    m.data = std::move(partial_);
    partial_.clear();
    partial_opcode_ = 0;
    return m;
  }
}

}  // namespace tapml::rpc

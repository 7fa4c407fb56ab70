#include "rpc/transport.h"

#include <poll.h>

#include <optional>

#include "core/error.h"

namespace tapml::rpc {

namespace {

class TcpTransport : public FrameTransport {
 public:
  explicit TcpTransport(Socket s) : socket_(std::move(s)) {}
  void send(const Message& m, const void* data, size_t size, int timeout_ms) override {
    if (data)
      socket_.send_frame_with_data(m, data, size, timeout_ms);
    else
      socket_.send_frame(m, timeout_ms);
  }
  bool receive(std::vector<uint8_t>& payload, int first_byte_timeout_ms, int timeout_ms) override {
    return socket_.recv_frame(payload, kMaxFrameBytes, first_byte_timeout_ms, timeout_ms);
  }
  bool pending() override {
    if (!socket_.open()) return false;
    pollfd p{socket_.fd(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }
  bool is_open() const override { return socket_.open(); }
  void close() override { socket_.close(); }

 private:
  Socket socket_;
};

class WebSocketTransport : public FrameTransport {
 public:
  explicit WebSocketTransport(std::unique_ptr<WebSocket> ws) : ws_(std::move(ws)) {}
  void send(const Message& m, const void* data, size_t size, int timeout_ms) override {
    std::vector<uint8_t> head = encode_frame(m);
    uint64_t n = uint64_t(head.size() - 4) + size;
    TAPML_REQUIRE(n <= kMaxFrameBytes,
                  "rpc: frame of " + std::to_string(n) + " bytes exceeds the limit");
    for (int i = 0; i < 4; ++i) head[i] = uint8_t(n >> (8 * i));
    ws_->send(WebSocket::Kind::Binary, {head, {static_cast<const uint8_t*>(data), data ? size : 0}},
              timeout_ms);
  }
  bool receive(std::vector<uint8_t>& payload, int first_byte_timeout_ms, int timeout_ms) override {
    if (!held_) held_ = next(first_byte_timeout_ms, timeout_ms);
    std::optional<std::vector<uint8_t>> m = std::move(*held_);
    held_.reset();
    if (!m) return false;
    payload = std::move(*m);
    return true;
  }
  bool pending() override {
    if (held_) return true;
    if (!ws_->readable()) return false;
    try {
      held_ = next(0, 1000);
    } catch (const Timeout&) {
      return false;  // only a ping or a control message: nothing for the client
    }
    return true;
  }
  bool is_open() const override { return open_; }
  void close() override {
    if (!open_) return;
    open_ = false;
    ws_->send_close(1000, "", 200);
    ws_->socket().close();
  }

 private:
  // The next frame, or nullopt at the end of the stream.
  std::optional<std::vector<uint8_t>> next(int first_byte_timeout_ms, int timeout_ms) {
    for (;;) {
      WebSocket::Message m = ws_->receive(first_byte_timeout_ms, timeout_ms);
      if (m.kind == WebSocket::Kind::Closed) return std::nullopt;
      if (m.kind == WebSocket::Kind::Text) continue;  // the relay's control messages
      return frame_payload(m.data, kMaxFrameBytes);
    }
  }

  std::unique_ptr<WebSocket> ws_;
  // What pending() received: a frame, or nullopt for the end of the stream.
  std::optional<std::optional<std::vector<uint8_t>>> held_;
  bool open_ = true;
};

}  // namespace

std::vector<uint8_t> frame_payload(const std::vector<uint8_t>& message, uint32_t max_frame_bytes) {
  TAPML_REQUIRE(message.size() >= 5, "rpc: binary message of " + std::to_string(message.size()) +
                                         " bytes is not a frame (at least 5)");
  uint32_t n = frame_length(message.data(), max_frame_bytes);
  TAPML_REQUIRE(uint64_t(n) + 4 == message.size(),
                "rpc: binary message of " + std::to_string(message.size()) +
                    " bytes holds a frame of length " + std::to_string(n) +
                    " (one message must carry exactly one frame)");
  return std::vector<uint8_t>(message.begin() + 4, message.end());
}

std::unique_ptr<FrameTransport> tcp_transport(Socket socket) {
  return std::make_unique<TcpTransport>(std::move(socket));
}

std::unique_ptr<FrameTransport> websocket_transport(std::unique_ptr<WebSocket> ws) {
  return std::make_unique<WebSocketTransport>(std::move(ws));
}

}  // namespace tapml::rpc

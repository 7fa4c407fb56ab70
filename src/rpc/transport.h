// What carries protocol frames between a client and a device: a TCP byte stream (tcp://), or
// a WebSocket whose binary messages each hold one whole frame (webgpu://, through the relay).
// The client engine (rpc/client.h) speaks to either through this interface.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "rpc/protocol.h"
#include "rpc/socket.h"
#include "rpc/websocket.h"

namespace tapml::rpc {

class FrameTransport {
 public:
  virtual ~FrameTransport() = default;
  // Sends `m` with `size` bytes of `data` appended to its body (WRITE's bytes) as one frame.
  virtual void send(const Message& m, const void* data, size_t size, int timeout_ms) = 0;
  // The next frame's payload (type + body), or false at a clean end of stream before one
  // begins. Throws Error on a timeout, a broken stream or a malformed frame.
  virtual bool receive(std::vector<uint8_t>& payload, int first_byte_timeout_ms,
                       int timeout_ms) = 0;
  // True when a frame or the end of the stream is waiting to be received (never blocks):
  // how a client notices what a server said unasked before it closed.
  virtual bool pending() = 0;
  virtual bool is_open() const = 0;
  virtual void close() = 0;
};

std::unique_ptr<FrameTransport> tcp_transport(Socket socket);
// `ws` is a client-side WebSocket past its handshake. Text messages (the relay's control
// messages) are skipped; a binary message that is not exactly one frame is an Error.
std::unique_ptr<FrameTransport> websocket_transport(std::unique_ptr<WebSocket> ws);

// The frame inside a binary WebSocket message (its payload without the u32 length), or an
// Error naming what is wrong with it: too short, or a length that disagrees with the message.
std::vector<uint8_t> frame_payload(const std::vector<uint8_t>& message, uint32_t max_frame_bytes);

}  // namespace tapml::rpc

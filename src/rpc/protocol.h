// The TapML device protocol (docs/protocol.md, version 3): length-prefixed frames carrying
// one message each, little-endian. This file knows nothing of sockets, so any byte stream
// (TCP, a WebSocket's binary messages) can carry the frames unchanged.
//
// Contract: decode_message() either returns a message whose every field is within the
// protocol's limits (string lengths, counts, ranks, dimensions, dtypes, no trailing bytes)
// or throws tapml::Error naming the problem. It never reads outside the given bytes. Checks
// that need state (does this buffer exist, is the tensor inside it, is the op known) are the
// server's (rpc/server.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "backend/backend.h"

namespace tapml::rpc {

// Not negotiated: client and server must speak the same version (2: HELLO_OK reports the
// server's limits; 3: tensors of ggml's block types travel, and HELLO_OK lists the dtypes the
// server's backend takes).
constexpr uint32_t kProtocolVersion = 3;
constexpr uint32_t kHelloMagic = 0x4c4d5054;  // "TPML" as little-endian bytes
// The largest frame any peer may send, whatever it advertises; bulk data is chunked below it.
constexpr uint32_t kMaxFrameBytes = 64u << 20;
// The frame size a server advertises by default; data chunks leave room for their headers.
constexpr uint32_t kDefaultFrameBytes = 16u << 20;
constexpr uint32_t kChunkHeaderRoom = 64;
constexpr size_t kMaxString = 4096;
constexpr size_t kMaxAttrs = 64;
constexpr size_t kMaxTensors = 16;
constexpr size_t kMaxRank = Shape::kMaxRank;  // what a Shape holds
constexpr size_t kMaxListItems = 1024;
constexpr int64_t kMaxDim = int64_t(1) << 40;

enum class MsgType : uint8_t {
  // Requests, client to server. Each gets exactly one reply, in order.
  Hello = 0x01,        // version, client name, token
  Alloc = 0x02,        // size -> Allocated(id)
  Free = 0x03,         // id -> Ok
  Write = 0x04,        // id, offset, data -> Ok
  Read = 0x05,         // id, offset, size -> Data
  WriteHashed = 0x06,  // id, offset, size, hash -> HashProbe(held): held bytes were copied
  CacheHashed = 0x07,  // id, offset, size, hash -> Ok: the server may keep these bytes
  Supports = 0x08,     // call -> Support(ok, reason)
  Run = 0x09,          // call -> Ok
  Sync = 0x0a,         // -> Ok
  // Replies, server to client.
  HelloOk = 0x81,
  Ok = 0x82,
  Allocated = 0x83,  // id
  Data = 0x84,       // data
  HashProbe = 0x85,  // flag: held
  Support = 0x86,    // flag: ok, text: reason
  Error = 0xff,      // text: the message
};

// A dtype's code on the wire: 0 f32, 1 f16, 2 bf16, 3 i32, then the block types 4 q4_0, 5 q4_1,
// 6 q5_0, 7 q5_1, 8 q8_0, 9 q2_k, 10 q3_k, 11 q4_k, 12 q5_k, 13 q6_k (docs/protocol.md).
uint8_t dtype_code(DType t);
// Throws Error("rpc: unknown dtype code N") for codes above 13.
DType dtype_from_code(uint8_t code);

// `text` with every control byte (below 0x20, and 0x7f) and NUL written as \xHH, so a name
// or message from the wire is shown whole (a NUL would cut it where C strings are used) and
// cannot drive the reader's terminal. Other bytes, backslashes included, are kept, so
// printable(printable(s)) == printable(s).
std::string printable(std::string_view text);

bool is_request(MsgType t);
std::string msg_name(MsgType t);

struct Hello {
  uint32_t magic = kHelloMagic;
  uint32_t version = kProtocolVersion;
  std::string client;
  std::string token;  // empty: none
};

struct HelloOk {
  uint32_t version = kProtocolVersion;
  std::string name;    // the wrapped backend's name ("cpu")
  std::string device;  // its description
  uint64_t max_buffer_bytes = 0;
  uint64_t memory_bytes = 0;        // this connection's cap on its buffers
  uint64_t total_memory_bytes = 0;  // the server's cap on all buffers plus the cache
  uint64_t cache_bytes = 0;         // the hash-probe cache's cap (within the total)
  uint32_t max_connections = 0;     // clients served at once
  uint32_t idle_timeout_ms = 0;     // a client silent this long is closed; 0: never
  uint32_t max_frame_bytes = kDefaultFrameBytes;
  uint64_t capabilities = 0;  // bit 0: hash probe
  std::vector<std::string> ops;
  // The dtypes the server's backend takes: f32, f16, bf16 and i32 always, and each block type
  // that some op of the backend accepts.
  std::vector<DType> dtypes;
};
constexpr uint64_t kCapHashProbe = 1;

// One message of either direction; which fields mean something depends on `type`.
struct Message {
  MsgType type = MsgType::Ok;
  Hello hello;
  HelloOk hello_ok;
  uint64_t id = 0, offset = 0, size = 0;
  std::string hash;  // 32 lowercase hex digits (core/hash.h content_hash)
  std::vector<uint8_t> data;
  OpCall call;
  bool flag = false;
  std::string text;
};

// The payload of a frame (type byte + body), without the length prefix.
std::vector<uint8_t> encode_message(const Message& m);
// The whole frame: u32 length + payload.
std::vector<uint8_t> encode_frame(const Message& m);
Message decode_message(std::span<const uint8_t> payload);

// Splits a byte stream into frame payloads. Throws Error for a zero or oversized length.
class FrameReader {
 public:
  explicit FrameReader(uint32_t max_frame_bytes = kMaxFrameBytes) : max_(max_frame_bytes) {}
  void feed(const uint8_t* data, size_t size);
  // The next complete payload, if one has arrived.
  std::optional<std::vector<uint8_t>> next();
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  uint32_t max_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
};

// Reads the u32 length prefix; throws Error if it is 0 or above max_frame_bytes.
uint32_t frame_length(const uint8_t header[4], uint32_t max_frame_bytes);

}  // namespace tapml::rpc

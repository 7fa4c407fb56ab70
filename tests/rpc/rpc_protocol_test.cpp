// The wire format on its own: every message survives encode/decode, and every truncated,
// padded, oversized or nonsensical payload is an Error, never a crash or a wrong message.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "rpc/protocol.h"

namespace tapml::rpc {
namespace {

OpCall sample_call() {
  OpCall c;
  c.op = Op::Matmul;
  c.inputs = {{1, 0, DType::F32, Shape{3, 8}}, {2, 64, DType::F16, Shape{4, 8}}};
  c.outputs = {{3, 0, DType::F32, Shape{3, 4}}};
  c.attrs.set("eps", 1e-5);
  c.site = "blk.0.attn_q";
  return c;
}

std::vector<Message> samples() {
  std::vector<Message> v;
  Message m;
  m.type = MsgType::Hello, m.hello.client = "test", m.hello.token = "t0k";
  v.push_back(m);
  m = {}, m.type = MsgType::HelloOk, m.hello_ok.name = "cpu", m.hello_ok.device = "host";
  m.hello_ok.ops = {"matmul", "add"}, m.hello_ok.dtypes = {DType::F32, DType::I32};
  m.hello_ok.max_buffer_bytes = 1 << 20, m.hello_ok.capabilities = kCapHashProbe;
  m.hello_ok.memory_bytes = 3, m.hello_ok.total_memory_bytes = 5, m.hello_ok.cache_bytes = 7;
  m.hello_ok.max_connections = 11, m.hello_ok.idle_timeout_ms = 13;
  v.push_back(m);
  m = {}, m.type = MsgType::Alloc, m.size = 123;
  v.push_back(m);
  m = {}, m.type = MsgType::Free, m.id = 7;
  v.push_back(m);
  m = {}, m.type = MsgType::Write, m.id = 7, m.offset = 9, m.data = {1, 2, 3};
  m.size = 3;
  v.push_back(m);
  m = {}, m.type = MsgType::Read, m.id = 7, m.offset = 9, m.size = 3;
  v.push_back(m);
  m = {}, m.type = MsgType::WriteHashed, m.id = 1, m.size = 5, m.hash = std::string(32, 'a');
  v.push_back(m);
  m.type = MsgType::CacheHashed;
  v.push_back(m);
  m = {}, m.type = MsgType::Run, m.call = sample_call();
  v.push_back(m);
  m.type = MsgType::Supports;
  v.push_back(m);
  m = {}, m.type = MsgType::Sync;
  v.push_back(m);
  m = {}, m.type = MsgType::Ok;
  v.push_back(m);
  m = {}, m.type = MsgType::Allocated, m.id = 42;
  v.push_back(m);
  m = {}, m.type = MsgType::Data, m.data = {9, 8}, m.size = 2;
  v.push_back(m);
  m = {}, m.type = MsgType::HashProbe, m.flag = true;
  v.push_back(m);
  m = {}, m.type = MsgType::Support, m.flag = false, m.text = "no f16";
  v.push_back(m);
  m = {}, m.type = MsgType::Error, m.text = "boom";
  v.push_back(m);
  return v;
}

TEST(RpcProtocol, EveryMessageRoundTrips) {
  for (const Message& m : samples()) {
    std::vector<uint8_t> bytes = encode_message(m);
    Message d = decode_message(bytes);
    EXPECT_EQ(encode_message(d), bytes) << msg_name(m.type);
    EXPECT_EQ(d.type, m.type);
  }
  const HelloOk h = decode_message(encode_message(samples()[1])).hello_ok;
  EXPECT_EQ(h.version, kProtocolVersion);
  EXPECT_EQ(h.memory_bytes, 3u);
  EXPECT_EQ(h.total_memory_bytes, 5u);
  EXPECT_EQ(h.cache_bytes, 7u);
  EXPECT_EQ(h.max_connections, 11u);
  EXPECT_EQ(h.idle_timeout_ms, 13u);
  EXPECT_EQ(h.ops.size(), 2u);
  Message d = decode_message(encode_message(samples()[8]));
  EXPECT_EQ(d.call.op, Op::Matmul);
  EXPECT_EQ(d.call.inputs[1].shape, (Shape{4, 8}));
  EXPECT_EQ(d.call.inputs[1].offset, 64u);
  EXPECT_EQ(d.call.attrs.get("eps"), 1e-5);
  EXPECT_EQ(d.call.site, "blk.0.attn_q");
}

TEST(RpcProtocol, EveryTruncationAndPaddingIsAnError) {
  for (const Message& m : samples()) {
    std::vector<uint8_t> bytes = encode_message(m);
    // Write and Data end in free-length bytes, so only their fixed part can be cut short.
    bool open_ended = m.type == MsgType::Write || m.type == MsgType::Data;
    for (size_t n = 0; n < bytes.size(); ++n) {
      std::span<const uint8_t> cut(bytes.data(), n);
      if (open_ended && n >= bytes.size() - m.data.size()) continue;
      EXPECT_THROW(decode_message(cut), Error) << msg_name(m.type) << " cut to " << n;
    }
    if (!open_ended) {
      bytes.push_back(0);
      EXPECT_THROW(decode_message(bytes), Error) << msg_name(m.type) << " with a trailing byte";
    }
  }
}

TEST(RpcProtocol, NonsenseFieldsAreNamed) {
  auto expect_error = [](std::vector<uint8_t> b, const std::string& part) {
    try {
      decode_message(b);
      ADD_FAILURE() << "decoded: " << part;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error({0x42}, "unknown message type");
  expect_error({}, "empty frame");
  Message m;
  m.type = MsgType::Hello;
  auto b = encode_message(m);
  b[1] ^= 0xff;
  expect_error(b, "magic");
  // A string length far beyond the limit.
  m = {}, m.type = MsgType::Error, m.text = "x";
  b = encode_message(m);
  b[3] = 0x10;
  expect_error(b, "exceeds");
  // A bad dtype code and a giant dimension inside a call.
  m = {}, m.type = MsgType::Run, m.call = sample_call();
  b = encode_message(m);
  size_t dtype_at = 1 + 4 + 6 + 4 + (4 + 3 + 8) + 4 + 16;
  ASSERT_EQ(b[dtype_at], uint8_t(DType::F32));
  b[dtype_at] = 14;  // one past q6_k, the last code
  expect_error(b, "dtype");
  b = encode_message(m);
  b[dtype_at + 2 + 7] = 0x7f;  // top byte of the first dimension
  expect_error(b, "dimension");
  // Too many tensors.
  m.call.inputs.assign(3, m.call.inputs[0]);
  b = encode_message(m);
  b[1 + 4 + 6 + 4 + (4 + 3 + 8)] = 200;
  expect_error(b, "inputs");
  m = {}, m.type = MsgType::WriteHashed, m.hash = std::string(32, 'G');
  expect_error(encode_message(m), "hex");
  // An op name the catalog does not have ("matmul" spelled "matmux").
  m = {}, m.type = MsgType::Run, m.call = sample_call();
  b = encode_message(m);
  ASSERT_EQ(b[1 + 4 + 5], uint8_t('l'));
  b[1 + 4 + 5] = 'x';
  expect_error(b, "unknown op 'matmux'");
}

TEST(RpcProtocol, PrintableEscapesControlBytesOnly) {
  EXPECT_EQ(printable(std::string("a\0b\x1b[1m\n\x7f", 9)), "a\\x00b\\x1b[1m\\x0a\\x7f");
  const std::string kept = "blk.0 \\x00 \xc3\xa9 ~";  // backslashes and UTF-8 stay as they are
  EXPECT_EQ(printable(kept), kept);
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  EXPECT_EQ(printable(printable(all)), printable(all));
}

TEST(RpcProtocol, FrameReaderSplitsAnyChunkingAndRejectsBadLengths) {
  std::vector<uint8_t> stream;
  for (const Message& m : samples()) {
    auto f = encode_frame(m);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  std::mt19937 rng(1);
  for (int round = 0; round < 20; ++round) {
    FrameReader r;
    size_t pos = 0, frames = 0;
    while (pos < stream.size()) {
      size_t n = std::min<size_t>(stream.size() - pos, 1 + rng() % 40);
      r.feed(stream.data() + pos, n);
      pos += n;
      while (auto p = r.next()) {
        EXPECT_EQ(decode_message(*p).type, samples()[frames].type);
        ++frames;
      }
    }
    EXPECT_EQ(frames, samples().size());
    EXPECT_EQ(r.buffered(), 0u);
  }
  FrameReader zero;
  uint8_t z[4] = {0, 0, 0, 0};
  zero.feed(z, 4);
  EXPECT_THROW(zero.next(), Error);
  FrameReader small(1024);
  uint8_t big[4] = {0x01, 0x04, 0, 0};  // 1025
  small.feed(big, 4);
  EXPECT_THROW(small.next(), Error);
}

}  // namespace
}  // namespace tapml::rpc

#include "rpc/protocol.h"

#include <cmath>
#include <cstring>
#include <iterator>

#include "core/error.h"

namespace tapml::rpc {

namespace {

class Writer {
 public:
  std::vector<uint8_t> out;
  void u8(uint8_t v) { out.push_back(v); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(uint8_t(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out.push_back(uint8_t(v >> (8 * i)));
  }
  void f64(double v) {
    uint64_t u;
    std::memcpy(&u, &v, 8);
    u64(u);
  }
  void str(const std::string& s) {
    TAPML_REQUIRE(s.size() <= kMaxString, "rpc: string of " + std::to_string(s.size()) +
                                              " bytes exceeds the protocol's " +
                                              std::to_string(kMaxString));
    u32(uint32_t(s.size()));
    out.insert(out.end(), s.begin(), s.end());
  }
  void bytes(const std::vector<uint8_t>& d) { out.insert(out.end(), d.begin(), d.end()); }
  void tensor(const DeviceTensor& t) {
    u64(t.buffer);
    u64(t.offset);
    u8(dtype_code(t.dtype));
    u8(uint8_t(t.shape.rank()));
    for (int64_t d : t.shape.dims()) u64(uint64_t(d));
  }
  void call(const OpCall& c) {
    TAPML_REQUIRE(c.attrs.items().size() <= kMaxAttrs && c.inputs.size() <= kMaxTensors &&
                      c.outputs.size() <= kMaxTensors,
                  "rpc: op call exceeds the protocol's limits");
    str(std::string(op_name(c.op)));
    u32(uint32_t(c.attrs.items().size()));
    for (auto& [k, v] : c.attrs.items()) str(k), f64(v);
    u32(uint32_t(c.inputs.size()));
    for (auto& t : c.inputs) tensor(t);
    u32(uint32_t(c.outputs.size()));
    for (auto& t : c.outputs) tensor(t);
    str(c.site);
  }
};

class Reader {
 public:
  Reader(std::span<const uint8_t> b, const char* what) : b_(b), what_(what) {}
  void need(size_t n) {
    TAPML_REQUIRE(b_.size() - pos_ >= n, std::string("rpc: truncated ") + what_ + " message");
  }
  uint8_t u8() {
    need(1);
    return b_[pos_++];
  }
  uint32_t u32() {
    need(4);
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t(b_[pos_ + i]) << (8 * i);
    pos_ += 4;
    return v;
  }
  uint64_t u64() {
    need(8);
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(b_[pos_ + i]) << (8 * i);
    pos_ += 8;
    return v;
  }
  double f64() {
    uint64_t u = u64();
    double v;
    std::memcpy(&v, &u, 8);
    return v;
  }
  std::string str(const char* field) {
    uint32_t n = u32();
    TAPML_REQUIRE(n <= kMaxString, std::string("rpc: ") + what_ + " " + field + " of " +
                                       std::to_string(n) + " bytes exceeds " +
                                       std::to_string(kMaxString));
    need(n);
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  uint32_t count(const char* field, size_t max) {
    uint32_t n = u32();
    TAPML_REQUIRE(n <= max, std::string("rpc: ") + what_ + " has " + std::to_string(n) + " " +
                                field + " (at most " + std::to_string(max) + ")");
    return n;
  }
  DType dtype() { return dtype_from_code(u8()); }
  DeviceTensor tensor() {
    DeviceTensor t;
    t.buffer = u64();
    t.offset = u64();
    t.dtype = dtype();
    uint8_t rank = u8();
    TAPML_REQUIRE(rank <= kMaxRank, "rpc: tensor rank " + std::to_string(rank) + " above " +
                                        std::to_string(kMaxRank));
    std::vector<int64_t> dims(rank);
    int64_t numel = 1;
    for (auto& d : dims) {
      uint64_t v = u64();
      TAPML_REQUIRE(v <= uint64_t(kMaxDim),
                    "rpc: tensor dimension " + std::to_string(v) + " out of range");
      d = int64_t(v);
      // Bounded so that numel * element size can never overflow later.
      if (d == 0)
        numel = 0;
      else if (numel > 0) {
        TAPML_REQUIRE(numel <= kMaxDim / d, "rpc: tensor of more than 2^40 elements");
        numel *= d;
      }
    }
    t.shape = Shape(std::move(dims));
    // A block type's rows are whole blocks, so that the tensor has a byte size.
    const int64_t block = block_elems(t.dtype);
    TAPML_REQUIRE(block == 1 || (rank >= 1 && t.shape.back() % block == 0),
                  "rpc: tensor of dtype " + std::string(dtype_name(t.dtype)) + " with rows of " +
                      (rank >= 1 ? std::to_string(t.shape.back()) : std::string("no")) +
                      " elements, not whole blocks of " + std::to_string(block));
    return t;
  }
  OpCall call() {
    OpCall c;
    std::string name = str("op name");
    TAPML_REQUIRE(!name.empty(), "rpc: empty op name");
    std::optional<Op> op = find_op(name);
    TAPML_REQUIRE(op.has_value(), "rpc: unknown op '" + printable(name) + "'");
    c.op = *op;
    uint32_t na = count("attributes", kMaxAttrs);
    for (uint32_t i = 0; i < na; ++i) {
      std::string k = str("attribute name");
      double v = f64();
      TAPML_REQUIRE(!c.attrs.has(k), "rpc: attribute '" + printable(k) + "' given twice");
      TAPML_REQUIRE(std::isfinite(v), "rpc: attribute '" + printable(k) + "' is not finite");
      c.attrs.set(k, v);
    }
    uint32_t ni = count("inputs", kMaxTensors);
    for (uint32_t i = 0; i < ni; ++i) c.inputs.push_back(tensor());
    uint32_t no = count("outputs", kMaxTensors);
    for (uint32_t i = 0; i < no; ++i) c.outputs.push_back(tensor());
    c.site = str("site");
    return c;
  }
  std::string hash() {
    std::string h = str("hash");
    TAPML_REQUIRE(h.size() == 32, "rpc: hash must be 32 hex digits");
    for (char ch : h)
      TAPML_REQUIRE((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'),
                    "rpc: hash must be lowercase hex");
    return h;
  }
  std::vector<uint8_t> rest() {
    std::vector<uint8_t> d(b_.begin() + pos_, b_.end());
    pos_ = b_.size();
    return d;
  }
  void done() {
    TAPML_REQUIRE(pos_ == b_.size(), "rpc: " + std::to_string(b_.size() - pos_) +
                                         " trailing bytes after a " + what_ + " message");
  }

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
  const char* what_;
};

}  // namespace

namespace {
// Position i holds the dtype of wire code i; fixed by the protocol, whatever DType's order.
constexpr DType kWireDTypes[] = {
    DType::F32,  DType::F16,  DType::BF16, DType::I32,  DType::Q4_0, DType::Q4_1, DType::Q5_0,
    DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,
};
}  // namespace

uint8_t dtype_code(DType t) {
  for (size_t i = 0; i < std::size(kWireDTypes); ++i)
    if (kWireDTypes[i] == t) return uint8_t(i);
  throw Error("rpc: dtype " + std::string(dtype_name(t)) + " has no code in the protocol");
}

DType dtype_from_code(uint8_t code) {
  TAPML_REQUIRE(code < std::size(kWireDTypes), "rpc: unknown dtype code " + std::to_string(code));
  return kWireDTypes[code];
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    auto b = static_cast<unsigned char>(ch);
    if (b >= 0x20 && b != 0x7f) {
      out += ch;
      continue;
    }
    const char* hex = "0123456789abcdef";
    out += "\\x";
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

bool is_request(MsgType t) { return uint8_t(t) < 0x80; }

std::string msg_name(MsgType t) {
  switch (t) {
    case MsgType::Hello:
      return "HELLO";
    case MsgType::Alloc:
      return "ALLOC";
    case MsgType::Free:
      return "FREE";
    case MsgType::Write:
      return "WRITE";
    case MsgType::Read:
      return "READ";
    case MsgType::WriteHashed:
      return "WRITE_HASHED";
    case MsgType::CacheHashed:
      return "CACHE_HASHED";
    case MsgType::Supports:
      return "SUPPORTS";
    case MsgType::Run:
      return "RUN";
    case MsgType::Sync:
      return "SYNC";
    case MsgType::HelloOk:
      return "HELLO_OK";
    case MsgType::Ok:
      return "OK";
    case MsgType::Allocated:
      return "ALLOCATED";
    case MsgType::Data:
      return "DATA";
    case MsgType::HashProbe:
      return "HASH_PROBE";
    case MsgType::Support:
      return "SUPPORT";
    case MsgType::Error:
      return "ERROR";
  }
  return "type " + std::to_string(int(t));
}

namespace {
// Appends the payload to w.out; `prefix` bytes already there (a frame header) don't count.
void encode_into(Writer& w, const Message& m, size_t prefix) {
  w.u8(uint8_t(m.type));
  switch (m.type) {
    case MsgType::Hello:
      w.u32(m.hello.magic), w.u32(m.hello.version), w.str(m.hello.client), w.str(m.hello.token);
      break;
    case MsgType::HelloOk: {
      const HelloOk& h = m.hello_ok;
      w.u32(h.version), w.str(h.name), w.str(h.device), w.u64(h.max_buffer_bytes);
      w.u64(h.memory_bytes), w.u64(h.total_memory_bytes), w.u64(h.cache_bytes);
      w.u32(h.max_connections), w.u32(h.idle_timeout_ms);
      w.u32(h.max_frame_bytes), w.u64(h.capabilities);
      TAPML_REQUIRE(h.ops.size() <= kMaxListItems && h.dtypes.size() <= kMaxListItems,
                    "rpc: too many ops or dtypes");
      w.u32(uint32_t(h.ops.size()));
      for (auto& o : h.ops) w.str(o);
      w.u32(uint32_t(h.dtypes.size()));
      for (DType d : h.dtypes) w.u8(dtype_code(d));
      break;
    }
    case MsgType::Alloc:
      w.u64(m.size);
      break;
    case MsgType::Free:
      w.u64(m.id);
      break;
    case MsgType::Write:
      w.u64(m.id), w.u64(m.offset), w.bytes(m.data);
      break;
    case MsgType::Read:
      w.u64(m.id), w.u64(m.offset), w.u64(m.size);
      break;
    case MsgType::WriteHashed:
    case MsgType::CacheHashed:
      w.u64(m.id), w.u64(m.offset), w.u64(m.size), w.str(m.hash);
      break;
    case MsgType::Supports:
    case MsgType::Run:
      w.call(m.call);
      break;
    case MsgType::Sync:
    case MsgType::Ok:
      break;
    case MsgType::Allocated:
      w.u64(m.id);
      break;
    case MsgType::Data:
      w.bytes(m.data);
      break;
    case MsgType::HashProbe:
      w.u8(m.flag ? 1 : 0);
      break;
    case MsgType::Support:
      w.u8(m.flag ? 1 : 0), w.str(m.text);
      break;
    case MsgType::Error:
      w.str(m.text.size() > kMaxString ? m.text.substr(0, kMaxString) : m.text);
      break;
  }
  TAPML_REQUIRE(w.out.size() - prefix <= kMaxFrameBytes, "rpc: message of " +
                                                             std::to_string(w.out.size() - prefix) +
                                                             " bytes exceeds the frame limit");
}
}  // namespace

std::vector<uint8_t> encode_message(const Message& m) {
  Writer w;
  encode_into(w, m, 0);
  return std::move(w.out);
}

std::vector<uint8_t> encode_frame(const Message& m) {
  // Encoded behind a placeholder header, so bulk data is copied once, not twice.
  Writer w;
  w.out.reserve(4 + 64 + m.data.size());
  w.u32(0);
  encode_into(w, m, 4);
  uint32_t n = uint32_t(w.out.size() - 4);
  for (int i = 0; i < 4; ++i) w.out[i] = uint8_t(n >> (8 * i));
  return std::move(w.out);
}

Message decode_message(std::span<const uint8_t> payload) {
  TAPML_REQUIRE(!payload.empty(), "rpc: empty frame");
  Message m;
  uint8_t t = payload[0];
  bool known = (t >= 0x01 && t <= 0x0a) || (t >= 0x81 && t <= 0x86) || t == 0xff;
  TAPML_REQUIRE(known, "rpc: unknown message type " + std::to_string(t));
  m.type = MsgType(t);
  std::string name = msg_name(m.type);
  Reader r(payload.subspan(1), name.c_str());
  switch (m.type) {
    case MsgType::Hello:
      m.hello.magic = r.u32();
      TAPML_REQUIRE(m.hello.magic == kHelloMagic, "rpc: not a TapML client (bad HELLO magic)");
      m.hello.version = r.u32();
      m.hello.client = r.str("client name");
      m.hello.token = r.str("token");
      break;
    case MsgType::HelloOk: {
      HelloOk& h = m.hello_ok;
      h.version = r.u32();
      h.name = r.str("name");
      h.device = r.str("device");
      h.max_buffer_bytes = r.u64();
      h.memory_bytes = r.u64();
      h.total_memory_bytes = r.u64();
      h.cache_bytes = r.u64();
      h.max_connections = r.u32();
      h.idle_timeout_ms = r.u32();
      h.max_frame_bytes = r.u32();
      TAPML_REQUIRE(
          h.max_frame_bytes >= 4096 && h.max_frame_bytes <= kMaxFrameBytes,
          "rpc: server frame limit " + std::to_string(h.max_frame_bytes) + " out of range");
      h.capabilities = r.u64();
      uint32_t n = r.count("ops", kMaxListItems);
      for (uint32_t i = 0; i < n; ++i) h.ops.push_back(r.str("op name"));
      n = r.count("dtypes", kMaxListItems);
      for (uint32_t i = 0; i < n; ++i) h.dtypes.push_back(r.dtype());
      break;
    }
    case MsgType::Alloc:
      m.size = r.u64();
      break;
    case MsgType::Free:
      m.id = r.u64();
      break;
    case MsgType::Write:
      m.id = r.u64(), m.offset = r.u64();
      m.data = r.rest();
      m.size = m.data.size();
      break;
    case MsgType::Read:
      m.id = r.u64(), m.offset = r.u64(), m.size = r.u64();
      break;
    case MsgType::WriteHashed:
    case MsgType::CacheHashed:
      m.id = r.u64(), m.offset = r.u64(), m.size = r.u64();
      m.hash = r.hash();
      break;
    case MsgType::Supports:
    case MsgType::Run:
      m.call = r.call();
      break;
    case MsgType::Sync:
    case MsgType::Ok:
      break;
    case MsgType::Allocated:
      m.id = r.u64();
      break;
    case MsgType::Data:
      m.data = r.rest();
      m.size = m.data.size();
      break;
    case MsgType::HashProbe: {
      uint8_t f = r.u8();
      TAPML_REQUIRE(f <= 1, "rpc: HASH_PROBE flag must be 0 or 1");
      m.flag = f;
      break;
    }
    case MsgType::Support: {
      uint8_t f = r.u8();
      TAPML_REQUIRE(f <= 1, "rpc: SUPPORT flag must be 0 or 1");
      m.flag = f;
      m.text = r.str("reason");
      break;
    }
    case MsgType::Error:
      m.text = r.str("message");
      break;
  }
  r.done();
  return m;
}

uint32_t frame_length(const uint8_t header[4], uint32_t max_frame_bytes) {
  uint32_t n = uint32_t(header[0]) | uint32_t(header[1]) << 8 | uint32_t(header[2]) << 16 |
               uint32_t(header[3]) << 24;
  TAPML_REQUIRE(n != 0, "rpc: zero-length frame");
  TAPML_REQUIRE(n <= max_frame_bytes, "rpc: frame of " + std::to_string(n) +
                                          " bytes exceeds the limit of " +
                                          std::to_string(max_frame_bytes));
  return n;
}

void FrameReader::feed(const uint8_t* data, size_t size) {
  if (pos_ > 0 && pos_ == buf_.size()) buf_.clear(), pos_ = 0;
  buf_.insert(buf_.end(), data, data + size);
}

std::optional<std::vector<uint8_t>> FrameReader::next() {
  if (buf_.size() - pos_ < 4) return std::nullopt;
  uint32_t n = frame_length(buf_.data() + pos_, max_);
  if (buf_.size() - pos_ - 4 < n) return std::nullopt;
  std::vector<uint8_t> p(buf_.begin() + pos_ + 4, buf_.begin() + pos_ + 4 + n);
  pos_ += 4 + n;
  if (pos_ > (1u << 20) && pos_ * 2 > buf_.size()) {
    buf_.erase(buf_.begin(), buf_.begin() + pos_);
    pos_ = 0;
  }
  return p;
}

}  // namespace tapml::rpc

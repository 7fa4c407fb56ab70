#include "rpc/client.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <regex>

#include "core/error.h"
#include "core/hash.h"

namespace tapml::rpc {

namespace {

class Client : public Backend {
 public:
  Client(std::unique_ptr<FrameTransport> transport, ClientOptions o)
      : opts_(std::move(o)), transport_(std::move(transport)) {
    where_ = opts_.where;
    timeout_ms_ = opts_.timeout_ms;
    call_timeout_ms_ = opts_.call_timeout_ms;
    hash_min_ = opts_.hash_min;
    Message hello;
    hello.type = MsgType::Hello;
    hello.hello.client = "tapml";
    hello.hello.token = opts_.token;
    std::vector<uint8_t> payload = transfer(hello, timeout_ms_);
    // The version comes first in HELLO_OK; the rest of its layout is the version's own, so it
    // is checked before anything else is read.
    if (payload.size() >= 5 && payload[0] == uint8_t(MsgType::HelloOk)) {
      uint32_t v = uint32_t(payload[1]) | uint32_t(payload[2]) << 8 | uint32_t(payload[3]) << 16 |
                   uint32_t(payload[4]) << 24;
      if (v != kProtocolVersion) version_mismatch(std::to_string(v));
    }
    Message r = decode(payload);
    if (r.type == MsgType::Error) {
      std::string text = printable(r.text.rfind("rpc: ", 0) == 0 ? r.text.substr(5) : r.text);
      // Servers of every version so far name their own version in this refusal.
      std::smatch v;
      if (std::regex_search(text, v, std::regex("this server (speaks )?([0-9]+)")) &&
          text.find("protocol") != std::string::npos)
        version_mismatch(v[2]);
      throw Error(where_ + ": the server refused the connection: " + text);
    }
    TAPML_REQUIRE(r.type == MsgType::HelloOk,
                  where_ + ": unexpected " + msg_name(r.type) + " in reply to HELLO");
    hello_ = r.hello_ok;
    if (!(hello_.capabilities & kCapHashProbe)) hash_min_ = 0;
    chunk_ = hello_.max_frame_bytes - kChunkHeaderRoom;
    info_.uri = opts_.uri;
    info_.name = opts_.kind;
    info_.device = opts_.describe(hello_);
    info_.max_buffer_bytes = hello_.max_buffer_bytes;
    info_.memory_bytes = std::min(hello_.memory_bytes, hello_.total_memory_bytes);
  }

  const BackendInfo& info() const override { return info_; }
  const TransferStats& stats() const { return stats_; }

  BufferId alloc(size_t bytes) override {
    if (opts_.reuse_bytes > 0) {
      std::lock_guard lock(mutex_);
      if (auto it = spare_.find(bytes); it != spare_.end()) {
        BufferId id = it->second;
        spare_.erase(it);
        spare_bytes_ -= bytes;
        live_[id] = bytes;
        return id;
      }
    }
    Message m;
    m.type = MsgType::Alloc;
    m.size = bytes;
    BufferId id;
    try {
      id = expect(m, MsgType::Allocated, timeout_ms_).id;
    } catch (const Error&) {
      // Refused (a memory cap, say): give the spare buffers back and ask once more.
      if (!release_spares()) throw;
      id = expect(m, MsgType::Allocated, timeout_ms_).id;
    }
    if (opts_.reuse_bytes > 0) {
      std::lock_guard lock(mutex_);
      live_[id] = bytes;
    }
    return id;
  }

  void free(BufferId id) override {
    std::lock_guard lock(mutex_);
    if (!lost_.empty()) return;
    for (const auto& spare : spare_)
      TAPML_REQUIRE(spare.second != id, where_ + ": buffer " + std::to_string(id) + " freed twice");
    if (auto it = live_.find(id); it != live_.end()) {
      size_t bytes = it->second;
      live_.erase(it);
      if (spare_bytes_ + bytes <= opts_.reuse_bytes) {
        spare_.emplace(bytes, id);
        spare_bytes_ += bytes;
        return;
      }
    }
    Message m;
    m.type = MsgType::Free;
    m.id = id;
    expect_locked(m, MsgType::Ok, timeout_ms_);
  }

  void write(BufferId id, size_t offset, const void* src, size_t bytes) override {
    const uint8_t* p = static_cast<const uint8_t*>(src);
    std::string hash;
    if (hash_min_ > 0 && bytes >= hash_min_) {
      hash = content_hash(src, bytes);
      Message probe;
      probe.type = MsgType::WriteHashed;
      probe.id = id, probe.offset = offset, probe.size = bytes, probe.hash = hash;
      if (expect(probe, MsgType::HashProbe, timeout_ms_).flag) {
        std::lock_guard lock(mutex_);
        stats_.bytes_skipped += bytes;
        return;
      }
    }
    for (size_t done = 0; done < bytes || (bytes == 0 && done == 0);) {
      size_t n = std::min<size_t>(chunk_, bytes - done);
      Message m;
      m.type = MsgType::Write;
      m.id = id, m.offset = offset + done;
      expect(m, MsgType::Ok, call_timeout_ms_, p + done, n);
      {
        std::lock_guard lock(mutex_);
        stats_.bytes_sent += n;
      }
      done += n;
      if (bytes == 0) break;
    }
    if (!hash.empty()) {
      Message m;
      m.type = MsgType::CacheHashed;
      m.id = id, m.offset = offset, m.size = bytes, m.hash = hash;
      expect(m, MsgType::Ok, call_timeout_ms_);
    }
  }

  void read(BufferId id, size_t offset, void* dst, size_t bytes) override {
    uint8_t* p = static_cast<uint8_t*>(dst);
    for (size_t done = 0; done < bytes;) {
      size_t n = std::min<size_t>(chunk_, bytes - done);
      Message m;
      m.type = MsgType::Read;
      m.id = id, m.offset = offset + done, m.size = n;
      Message r = expect(m, MsgType::Data, call_timeout_ms_);
      TAPML_REQUIRE(r.data.size() == n, where_ + ": server sent " + std::to_string(r.data.size()) +
                                            " bytes for a read of " + std::to_string(n));
      std::copy(r.data.begin(), r.data.end(), p + done);
      std::lock_guard lock(mutex_);
      stats_.bytes_received += n;
      done += n;
    }
  }

  Support supports(const OpCall& call) const override {
    const std::string op(op_name(call.op));
    if (std::find(hello_.ops.begin(), hello_.ops.end(), op) == hello_.ops.end())
      return Support::no(where_ + " does not offer op " + op);
    // A dtype travels only to a device that lists it in HELLO_OK.
    if (std::string why = missing_dtype(call); !why.empty()) return Support::no(why);
    // A backend's answer depends on the call's signature, not on which buffers it names, so
    // one round trip per signature is enough (a model asks for every call it dispatches).
    std::string key = op + "|";
    for (auto& [k, v] : call.attrs.items()) key += k + "=" + std::to_string(v) + ",";
    for (auto* list : {&call.inputs, &call.outputs}) {
      key += "|";
      for (auto& t : *list) key += std::string(dtype_name(t.dtype)) + t.shape.str();
    }
    {
      std::lock_guard lock(mutex_);
      if (auto it = supports_cache_.find(key); it != supports_cache_.end()) return it->second;
    }
    Message m;
    m.type = MsgType::Supports;
    m.call = call;
    try {
      Message r = const_cast<Client*>(this)->expect(m, MsgType::Support, timeout_ms_);
      Support s = r.flag ? Support::yes() : Support::no(printable(r.text));
      std::lock_guard lock(mutex_);
      if (s.ok && supports_cache_.size() < 100000) supports_cache_[key] = s;
      return s;
    } catch (const Error& e) {
      return Support::no(e.what());
    }
  }

  void run(const OpCall& call) override {
    if (std::string why = missing_dtype(call); !why.empty()) throw Error(why);
    Message m;
    m.type = MsgType::Run;
    m.call = call;
    expect(m, MsgType::Ok, call_timeout_ms_);
  }

  void sync() override {
    Message m;
    m.type = MsgType::Sync;
    expect(m, MsgType::Ok, call_timeout_ms_);
  }

 private:
  // Why the server cannot take the call's dtypes ("" when it can): it lists what its backend
  // takes, and a quantized weight sent to a device that cannot compute it would fail there.
  std::string missing_dtype(const OpCall& call) const {
    for (auto* list : {&call.inputs, &call.outputs})
      for (const DeviceTensor& t : *list)
        if (std::find(hello_.dtypes.begin(), hello_.dtypes.end(), t.dtype) == hello_.dtypes.end()) {
          std::string listed;
          for (DType d : hello_.dtypes)
            listed += (listed.empty() ? "" : ", ") + std::string(dtype_name(d));
          return where_ + " does not take dtype " + std::string(dtype_name(t.dtype)) +
                 " (its backend " + printable(hello_.name) + " takes " + listed + ")";
        }
    return "";
  }

  Message expect(const Message& m, MsgType want, int timeout_ms, const void* data = nullptr,
                 size_t size = 0) {
    std::lock_guard lock(mutex_);
    return expect_locked(m, want, timeout_ms, data, size);
  }

  // `data`, when given, follows the message's fields in the same frame (WRITE's bytes).
  Message expect_locked(const Message& m, MsgType want, int timeout_ms, const void* data = nullptr,
                        size_t size = 0) {
    Message r = request(m, timeout_ms, data, size);
    // The device's own message, unchanged but for control bytes: replay reports must read as
    // they would locally, and a server must not write to the user's terminal.
    if (r.type == MsgType::Error) throw Error(printable(r.text));
    if (r.type != want) {
      lose("unexpected " + msg_name(r.type) + " in reply to " + msg_name(m.type));
      throw Error(lost_);
    }
    return r;
  }

  [[noreturn]] void version_mismatch(const std::string& server_version) {
    lose("protocol version mismatch");
    throw Error(where_ + ": server speaks protocol " + server_version + ", this build " +
                std::to_string(kProtocolVersion));
  }

  // Sends one request and reads its reply; any transport failure loses the connection.
  Message request(const Message& m, int timeout_ms, const void* data = nullptr, size_t size = 0) {
    Message r = decode(transfer(m, timeout_ms, data, size));
    // An ERROR the server closes the connection after (its text starts "rpc:"): a protocol
    // error, or the server closing this connection, e.g. after the idle timeout.
    if (r.type == MsgType::Error && r.text.rfind("rpc:", 0) == 0) closed_by_server(r.text);
    return r;
  }

  // The payload of the reply to `m`, undecoded.
  std::vector<uint8_t> transfer(const Message& m, int timeout_ms, const void* data = nullptr,
                                size_t size = 0) {
    TAPML_REQUIRE(lost_.empty(), lost_);
    ++stats_.requests;
    // A server that closes a connection says why first, unasked; that ERROR (or the end of
    // the stream) waits here until the next request.
    if (rpc_started_ && transport_->is_open() && transport_->pending()) {
      std::string why = "connection closed by server";
      try {
        std::vector<uint8_t> payload;
        if (transport_->receive(payload, 100, 1000)) {
          Message r = decode_message(payload);
          why = r.type == MsgType::Error ? r.text
                                         : "unexpected " + msg_name(r.type) + " from the server";
        }
      } catch (const Error& e) {
        why = e.what();
      }
      closed_by_server(why);
    }
    rpc_started_ = true;
    try {
      transport_->send(m, data, size, timeout_ms);
      std::vector<uint8_t> payload;
      if (!transport_->receive(payload, timeout_ms, timeout_ms))
        throw Error("connection closed by server");
      return payload;
    } catch (const Error& e) {
      lose(e.what());
      throw Error(lost_);
    }
  }

  Message decode(const std::vector<uint8_t>& payload) {
    try {
      Message r = decode_message(payload);
      TAPML_REQUIRE(!is_request(r.type), "rpc: server sent a request");
      return r;
    } catch (const Error& e) {
      lose(e.what());
      throw Error(lost_);
    }
  }

  [[noreturn]] void closed_by_server(const std::string& text) {
    lose(printable(text.rfind("rpc: ", 0) == 0 ? text.substr(5) : text));
    throw Error(lost_);
  }

  void lose(const std::string& why) {
    lost_ = where_ + ": connection lost (" + why + ")";
    transport_->close();
  }

  // Frees the spare buffers on the device; false if there were none.
  bool release_spares() {
    std::lock_guard lock(mutex_);
    if (spare_.empty() || !lost_.empty()) return false;
    for (auto& [bytes, id] : spare_) {
      Message m;
      m.type = MsgType::Free;
      m.id = id;
      expect_locked(m, MsgType::Ok, timeout_ms_);
    }
    spare_.clear();
    spare_bytes_ = 0;
    return true;
  }

  std::string where_;
  // With ClientOptions::reuse_bytes: the sizes of the buffers in use, and freed buffers kept
  // for the next alloc of the same size (by size), within reuse_bytes in all.
  std::map<BufferId, size_t> live_;
  std::multimap<size_t, BufferId> spare_;
  size_t spare_bytes_ = 0;
  int timeout_ms_ = 5000, call_timeout_ms_ = 120000;
  uint64_t hash_min_ = 4096;
  size_t chunk_ = kDefaultFrameBytes - kChunkHeaderRoom;
  ClientOptions opts_;
  std::unique_ptr<FrameTransport> transport_;
  HelloOk hello_;
  BackendInfo info_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, Support> supports_cache_;
  std::string lost_;          // non-empty once the connection is gone
  bool rpc_started_ = false;  // HELLO has been sent
  TransferStats stats_;
};

}  // namespace

std::unique_ptr<Backend> connect_client(std::unique_ptr<FrameTransport> transport,
                                        ClientOptions options) {
  return std::make_unique<Client>(std::move(transport), std::move(options));
}

const TransferStats* client_transfer_stats(const Backend& backend) {
  auto* c = dynamic_cast<const Client*>(&backend);
  return c ? &c->stats() : nullptr;
}

}  // namespace tapml::rpc

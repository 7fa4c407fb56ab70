#include "rpc/server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <unordered_map>

#include "core/error.h"
#include "core/hash.h"

namespace tapml::rpc {

struct Server::Connection {
  Socket socket;
  std::thread thread;
  std::atomic<bool> done{false};
  bool greeted = false;
  struct Buffer {
    BufferId backend_id;
    uint64_t size;
  };
  std::unordered_map<uint64_t, Buffer> buffers;  // client-visible id -> backend buffer
  uint64_t next_id = 1;
  uint64_t used = 0;
  std::string peer;
};

namespace {

// Whether [offset, offset + size) lies inside a buffer of `total` bytes, without overflow.
bool in_range(uint64_t offset, uint64_t size, uint64_t total) {
  return offset <= total && size <= total - offset;
}

// Messages may carry names from the wire (or a wrapped backend's text about them); they go
// out printable, so a client can show them as one whole line.
Message error_reply(const std::string& text) {
  Message m;
  m.type = MsgType::Error;
  m.text = printable(text);
  return m;
}

}  // namespace

uint64_t default_total_memory() {
  long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return uint64_t(8) << 30;
  return uint64_t(pages) * uint64_t(page) / 2;
}

Server::Server(std::unique_ptr<Backend> backend, ServerOptions options)
    : backend_(std::move(backend)), opts_(std::move(options)) {
  TAPML_REQUIRE(backend_ != nullptr, "serve: no backend");
  TAPML_REQUIRE(is_loopback(opts_.host) || !opts_.token.empty(),
                "serve: listening on " + opts_.host +
                    " exposes the device beyond this machine; give --token T (clients then "
                    "connect with tcp://HOST:PORT?token=T)");
  TAPML_REQUIRE(opts_.max_frame_bytes >= 4096 && opts_.max_frame_bytes <= kMaxFrameBytes,
                "serve: frame limit must be between 4096 and " + std::to_string(kMaxFrameBytes));
  TAPML_REQUIRE(opts_.max_connections >= 1, "serve: --max-connections must be at least 1");
  TAPML_REQUIRE(opts_.max_memory >= 1, "serve: --max-memory must be at least 1 byte");
  TAPML_REQUIRE(opts_.max_total_memory >= 1, "serve: --max-total-memory must be at least 1 byte");
  listener_ = listen_tcp(opts_.host, opts_.port);
  port_ = bound_port(listener_);
  // Non-blocking, so serve() can drain every pending connection and still notice stop().
  ::fcntl(listener_.fd(), F_SETFL, ::fcntl(listener_.fd(), F_GETFL) | O_NONBLOCK);
}

Server::~Server() {
  stop();
  // Joined outside the lock: connection threads take it too, on their way out.
  std::list<std::unique_ptr<Connection>> all;
  {
    std::lock_guard lock(conn_mutex_);
    all.swap(connections_);
  }
  for (auto& c : all)
    if (c->thread.joinable()) c->thread.join();
}

ServerStats Server::stats() const {
  std::lock_guard lock(conn_mutex_);
  ServerStats s = stats_;
  s.buffer_bytes = buffers_used_;
  s.cache_bytes = cache_used_;
  return s;
}

void Server::stop() {
  stopping_ = true;
  std::lock_guard lock(conn_mutex_);
  for (auto& c : connections_) c->socket.shutdown();
}

void Server::serve() {
  while (!stopping_) {
    pollfd p{listener_.fd(), POLLIN, 0};
    int r = ::poll(&p, 1, 100);
    // Reap finished connections so a long-lived server does not accumulate threads; the
    // joins happen outside the lock, which connection threads also take.
    std::list<std::unique_ptr<Connection>> finished;
    {
      std::lock_guard lock(conn_mutex_);
      for (auto it = connections_.begin(); it != connections_.end();) {
        auto next = std::next(it);
        if ((*it)->done) finished.splice(finished.end(), connections_, it);
        it = next;
      }
    }
    for (auto& c : finished) c->thread.join();
    if (r <= 0 || stopping_) continue;
    // Take every pending connection, so a burst cannot fill the listen backlog.
    for (;;) {
      int fd = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) break;
      Socket s(fd);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard lock(conn_mutex_);
      if (int(connections_.size()) >= opts_.max_connections) {
        try {
          s.send_frame(error_reply("server busy: " + std::to_string(opts_.max_connections) +
                                   " connections already open"),
                       100);
        } catch (const Error&) {
        }
        continue;
      }
      auto c = std::make_unique<Connection>();
      c->socket = std::move(s);
      Connection* raw = c.get();
      ++stats_.connections;
      connections_.push_back(std::move(c));
      raw->thread = std::thread([this, raw] {
        handle(*raw);
        raw->done = true;
      });
    }
  }
  std::lock_guard lock(conn_mutex_);
  for (auto& c : connections_) c->socket.shutdown();
}

void Server::release(Connection& c) {
  std::lock_guard lock(backend_mutex_);
  for (auto& [id, b] : c.buffers) {
    try {
      backend_->free(b.backend_id);
    } catch (const std::exception&) {
      // The wrapped backend failing to free must not take the server down.
    }
  }
  c.buffers.clear();
  buffers_used_ -= c.used;
  c.used = 0;
}

void Server::evict_cache_until(uint64_t cache_limit) {
  while (cache_used_ > cache_limit && !cache_order_.empty()) {
    auto old = cache_order_.front();
    cache_order_.pop_front();
    cache_used_ -= cache_[old]->size();
    cache_.erase(old);
  }
}

void Server::reserve(const Connection& c, uint64_t size) {
  const uint64_t total = opts_.max_total_memory;
  // Cached bytes can always be dropped, so only other buffers can refuse an allocation.
  TAPML_REQUIRE(size <= total && buffers_used_ <= total - size,
                "allocating " + std::to_string(size) +
                    " bytes would pass the server's memory cap of " + std::to_string(total) +
                    " bytes (--max-total-memory; " + std::to_string(buffers_used_) +
                    " in use by all connections); this connection's cap is " +
                    std::to_string(opts_.max_memory) + " bytes (--max-memory; " +
                    std::to_string(c.used) + " in use)");
  evict_cache_until(total - buffers_used_ - size);
}

void Server::handle(Connection& c) {
  std::vector<uint8_t> payload;
  for (;;) {
    Message reply;
    bool keep = true;
    try {
      // Between requests a client may think for as long as it likes; within a frame not.
      if (!c.socket.recv_frame(payload, opts_.max_frame_bytes,
                               c.greeted ? -1 : opts_.hello_timeout_ms, opts_.frame_timeout_ms))
        break;
    } catch (const Error& e) {
      // Oversized or zero frames, timeouts mid-frame: the stream cannot be trusted further.
      {
        std::lock_guard lock(conn_mutex_);
        ++stats_.protocol_errors;
      }
      try {
        c.socket.send_frame(error_reply(e.what()), 1000);
      } catch (const Error&) {
      }
      break;
    }
    try {
      Message m = decode_message(payload);
      keep = handle_request(c, m, reply);
    } catch (const Error& e) {
      reply = error_reply(e.what());
      // A message that does not decode, or arrives out of order, ends the connection.
      keep = c.greeted && reply.text.rfind("rpc:", 0) != 0;
      if (!keep) {
        std::lock_guard lock(conn_mutex_);
        ++stats_.protocol_errors;
      }
    } catch (const std::exception& e) {
      reply = error_reply(std::string("internal error: ") + e.what());
    }
    try {
      c.socket.send_frame(reply, opts_.frame_timeout_ms);
    } catch (const Error&) {
      break;
    }
    if (!keep) break;
  }
  release(c);
  c.socket.shutdown();
}

bool Server::handle_request(Connection& c, const Message& m, Message& reply) {
  if (!c.greeted) {
    if (m.type != MsgType::Hello) throw Error("rpc: expected HELLO first, got " + msg_name(m.type));
    if (m.hello.version != kProtocolVersion)
      throw Error("rpc: protocol version " + std::to_string(m.hello.version) +
                  " not supported (this server speaks " + std::to_string(kProtocolVersion) + ")");
    if (!opts_.token.empty() && m.hello.token != opts_.token)
      throw Error(std::string("rpc: ") +
                  (m.hello.token.empty() ? "this server requires a token (tcp://HOST:PORT?token=T)"
                                         : "wrong token"));
    c.greeted = true;
    reply.type = MsgType::HelloOk;
    HelloOk& h = reply.hello_ok;
    const BackendInfo& info = backend_->info();
    h.name = info.name.substr(0, kMaxString);
    h.device = info.device.substr(0, kMaxString);
    h.max_buffer_bytes = std::min<uint64_t>(info.max_buffer_bytes, opts_.max_memory);
    h.memory_bytes = opts_.max_memory;
    h.max_frame_bytes = opts_.max_frame_bytes;
    h.capabilities = opts_.cache_bytes > 0 ? kCapHashProbe : 0;
    for (const OpDef& d : all_ops()) h.ops.push_back(std::string(d.name));
    h.dtypes = {DType::F32, DType::F16, DType::BF16, DType::I32};
    return true;
  }
  if (!is_request(m.type) || m.type == MsgType::Hello)
    throw Error("rpc: unexpected " + msg_name(m.type) + " from a client");

  auto buffer = [&](uint64_t id) -> Connection::Buffer& {
    auto it = c.buffers.find(id);
    TAPML_REQUIRE(it != c.buffers.end(), "no buffer " + std::to_string(id) + " on this connection");
    return it->second;
  };
  auto check_range = [&](const Connection::Buffer& b, uint64_t id, uint64_t offset, uint64_t size) {
    TAPML_REQUIRE(in_range(offset, size, b.size), "bytes " + std::to_string(offset) + "+" +
                                                      std::to_string(size) +
                                                      " lie outside buffer " + std::to_string(id) +
                                                      " of " + std::to_string(b.size) + " bytes");
  };

  reply.type = MsgType::Ok;
  switch (m.type) {
    case MsgType::Alloc: {
      TAPML_REQUIRE(m.size > 0, "cannot allocate a buffer of 0 bytes");
      TAPML_REQUIRE(m.size <= opts_.max_memory - c.used,
                    "allocating " + std::to_string(m.size) +
                        " bytes would pass this connection's memory cap of " +
                        std::to_string(opts_.max_memory) + " bytes (--max-memory; " +
                        std::to_string(c.used) + " in use); the server's cap is " +
                        std::to_string(opts_.max_total_memory) + " bytes (--max-total-memory)");
      BufferId bid;
      {
        std::lock_guard lock(backend_mutex_);
        reserve(c, m.size);
        bid = backend_->alloc(m.size);
        buffers_used_ += m.size;
      }
      uint64_t id = c.next_id++;
      c.buffers[id] = {bid, m.size};
      c.used += m.size;
      reply.type = MsgType::Allocated;
      reply.id = id;
      return true;
    }
    case MsgType::Free: {
      Connection::Buffer b = buffer(m.id);
      c.buffers.erase(m.id);
      c.used -= b.size;
      std::lock_guard lock(backend_mutex_);
      buffers_used_ -= b.size;
      backend_->free(b.backend_id);
      return true;
    }
    case MsgType::Write: {
      Connection::Buffer& b = buffer(m.id);
      check_range(b, m.id, m.offset, m.data.size());
      std::lock_guard lock(backend_mutex_);
      if (!m.data.empty()) backend_->write(b.backend_id, m.offset, m.data.data(), m.data.size());
      return true;
    }
    case MsgType::Read: {
      Connection::Buffer& b = buffer(m.id);
      check_range(b, m.id, m.offset, m.size);
      TAPML_REQUIRE(m.size <= opts_.max_frame_bytes - kChunkHeaderRoom,
                    "read of " + std::to_string(m.size) +
                        " bytes exceeds the frame limit; read in "
                        "chunks of at most " +
                        std::to_string(opts_.max_frame_bytes - kChunkHeaderRoom));
      reply.type = MsgType::Data;
      reply.data.resize(m.size);
      std::lock_guard lock(backend_mutex_);
      if (m.size) backend_->read(b.backend_id, m.offset, reply.data.data(), m.size);
      return true;
    }
    case MsgType::WriteHashed: {
      Connection::Buffer& b = buffer(m.id);
      check_range(b, m.id, m.offset, m.size);
      reply.type = MsgType::HashProbe;
      std::lock_guard lock(backend_mutex_);
      auto it = cache_.find({m.hash, m.size});
      if (it != cache_.end()) {
        backend_->write(b.backend_id, m.offset, it->second->data(), m.size);
        reply.flag = true;
        std::lock_guard l2(conn_mutex_);
        ++stats_.cache_hits;
        stats_.cache_hit_bytes += m.size;
      }
      return true;
    }
    case MsgType::CacheHashed: {
      Connection::Buffer& b = buffer(m.id);
      check_range(b, m.id, m.offset, m.size);
      if (m.size < opts_.cache_min_bytes || m.size > opts_.cache_bytes) return true;
      std::lock_guard lock(backend_mutex_);
      if (cache_.count({m.hash, m.size})) return true;
      // The cache lives within the server's cap, beside the buffers; without room for this
      // copy the bytes are simply not kept (the write itself is done).
      const uint64_t room =
          opts_.max_total_memory - std::min<uint64_t>(buffers_used_, opts_.max_total_memory);
      const uint64_t limit = std::min(opts_.cache_bytes, room);
      if (m.size > limit) return true;
      auto bytes = std::make_shared<std::vector<uint8_t>>(m.size);
      backend_->read(b.backend_id, m.offset, bytes->data(), m.size);
      // The server hashes the bytes itself: a client must not be able to plant wrong bytes
      // under a hash that another client's weights will later be looked up by.
      TAPML_REQUIRE(content_hash(bytes->data(), m.size) == m.hash,
                    "CACHE_HASHED: the buffer's bytes do not have hash " + m.hash);
      evict_cache_until(limit - m.size);
      cache_[{m.hash, m.size}] = bytes;
      cache_order_.push_back({m.hash, m.size});
      cache_used_ += m.size;
      return true;
    }
    case MsgType::Supports: {
      reply.type = MsgType::Support;
      // Asked before any buffer exists (to plan a placement), so only the op, attributes and
      // types are checked; the buffers are checked when the call runs.
      OpCall t;
      try {
        validate_call(c, m.call, t, false);
      } catch (const Error& e) {
        reply.flag = false;
        reply.text = printable(e.what()).substr(0, kMaxString);
        return true;
      }
      std::lock_guard lock(backend_mutex_);
      Support s = backend_->supports(t);
      reply.flag = s.ok;
      reply.text = printable(s.reason).substr(0, kMaxString);
      return true;
    }
    case MsgType::Run: {
      OpCall t;
      validate_call(c, m.call, t, true);
      std::lock_guard lock(backend_mutex_);
      Support s = backend_->supports(t);
      TAPML_REQUIRE(s.ok, std::string(op_name(m.call.op)) + ": not supported by " +
                              backend_->info().name + ": " + s.reason);
      backend_->run(t);
      return true;
    }
    case MsgType::Sync: {
      std::lock_guard lock(backend_mutex_);
      backend_->sync();
      return true;
    }
    default:
      throw Error("rpc: unexpected " + msg_name(m.type));
  }
}

void Server::validate_call(Connection& c, const OpCall& call, OpCall& t, bool place_buffers) {
  // The catalog's messages quote attribute names; one with a NUL would be cut short there.
  for (auto& [k, v] : call.attrs.items())
    TAPML_REQUIRE(printable(k) == k,
                  std::string(op_name(call.op)) + ": unknown attribute '" + printable(k) + "'");
  validate(call);
  t = call;
  // A SUPPORTS question may name any buffers (they only say which tensors share bytes); the
  // wrapped backend answers from types and layout alone.
  if (!place_buffers) return;
  const OpDef& def = op_def(call.op);
  const std::string op(def.name);
  auto place = [&](const DeviceTensor& x, DeviceTensor& y, const std::string& what) {
    auto it = c.buffers.find(x.buffer);
    TAPML_REQUIRE(it != c.buffers.end(), op + ": " + what + " names buffer " +
                                             std::to_string(x.buffer) +
                                             ", which this connection does not hold");
    TAPML_REQUIRE(in_range(x.offset, x.nbytes(), it->second.size),
                  op + ": " + what + " " + x.shape.str() + " at offset " +
                      std::to_string(x.offset) + " lies outside its buffer of " +
                      std::to_string(it->second.size) + " bytes");
    y.buffer = it->second.backend_id;
  };
  for (size_t i = 0; i < call.inputs.size(); ++i) place(call.inputs[i], t.inputs[i], def.inputs[i]);
  for (size_t i = 0; i < call.outputs.size(); ++i)
    place(call.outputs[i], t.outputs[i], def.outputs[i]);
}

}  // namespace tapml::rpc

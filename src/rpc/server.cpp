#include "rpc/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <map>
#include <unordered_map>

#include "core/error.h"
#include "core/hash.h"

namespace tapml::rpc {

using Clock = std::chrono::steady_clock;

struct Server::Connection {
  Socket socket;
  std::thread thread;
  std::atomic<bool> done{false};
  // Guarded by conn_mutex_. A connection waits for HELLO (Handshake), then alternates between
  // waiting for a request (Idle) and serving one (Busy); Closed once its thread is leaving.
  enum class Stage { Handshake, Idle, Busy, Closed } stage = Stage::Handshake;
  Clock::time_point since = Clock::now();  // connected (Handshake), or last reply sent (Idle)
  bool heard = false;                      // Handshake: the first bytes of HELLO have come
  std::string closing;  // set by another thread: send this ERROR and close, at the next chance
  // The connection's own thread only.
  bool greeted = false;
  struct Buffer {
    BufferId backend_id;
    uint64_t size;
  };
  std::unordered_map<uint64_t, Buffer> buffers;  // client-visible id -> backend buffer
  uint64_t next_id = 1;
  uint64_t used = 0;
  std::string peer;  // the client's numeric address, set before its thread starts
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

int ms_until(Clock::time_point deadline) {
  // Rounded up, so that a wait that times out has reached the deadline.
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return int(std::clamp<int64_t>(left.count(), 0, INT32_MAX));
}

// "300 ms", "600 s": how long a limit or an idle spell was, as a user would set it; past
// 10 s, whole seconds are precise enough.
std::string duration_text(int64_t ms) {
  return ms % 1000 == 0 || ms >= 10000 ? std::to_string(ms / 1000) + " s"
                                       : std::to_string(ms) + " ms";
}

// Whether bytes (or the end of the stream) wait on fd, waiting at most timeout_ms (-1: for
// ever).
bool wait_readable(int fd, int timeout_ms) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, timeout_ms);
    if (r >= 0) return r > 0;
    if (errno != EINTR) return true;  // let the read report it
  }
}

// One frame whose every byte arrives by `deadline`; false at a clean end of stream before it.
bool read_frame(Socket& s, std::vector<uint8_t>& payload, uint32_t max_frame_bytes,
                Clock::time_point deadline) {
  uint8_t header[4];
  if (!s.recv_all(header, 4, ms_until(deadline), true)) return false;
  payload.resize(frame_length(header, max_frame_bytes));
  s.recv_all(payload.data(), payload.size(), ms_until(deadline));
  return true;
}

}  // namespace

uint64_t default_total_memory() {
  long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return uint64_t(8) << 30;
  return uint64_t(pages) * uint64_t(page) / 2;
}

namespace {

// The dtypes a client may send this backend: the plain ones, and each block type the backend
// takes in one of the ops that read block types (a matmul weight, an embedding table), asked
// with a one-row call whose rows are one 256-element block (whole blocks of every type).
std::vector<DType> backend_dtypes(const Backend& b) {
  std::vector<DType> out = {DType::F32, DType::F16, DType::BF16, DType::I32};
  for (DType d : kBlockDTypes) {
    const Shape row{1, 256};
    OpCall matmul;
    matmul.op = Op::Matmul;
    matmul.inputs = {{1, 0, DType::F32, row}, {2, 0, d, row}};
    matmul.outputs = {{3, 0, DType::F32, Shape{1, 1}}};
    OpCall embedding;
    embedding.op = Op::Embedding;
    embedding.inputs = {{2, 0, d, row}, {1, 0, DType::I32, Shape{1}}};
    embedding.outputs = {{3, 0, DType::F32, row}};
    bool takes = false;
    for (const OpCall* call : {&matmul, &embedding}) {
      try {
        takes = takes || b.supports(*call).ok;
      } catch (const Error&) {
        // A backend that throws instead of answering does not take the dtype.
      }
    }
    if (takes) out.push_back(d);
  }
  return out;
}

}  // namespace

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
  TAPML_REQUIRE(opts_.max_handshakes >= 1,
                "serve: at least one connection must be able to say HELLO");
  TAPML_REQUIRE(opts_.hello_timeout_ms >= 1 && opts_.frame_timeout_ms >= 1,
                "serve: the HELLO and frame timeouts must be at least 1 ms");
  TAPML_REQUIRE(opts_.idle_timeout_ms >= 0, "serve: --idle-timeout must not be negative");
  TAPML_REQUIRE(opts_.max_memory >= 1, "serve: --max-memory must be at least 1 byte");
  TAPML_REQUIRE(opts_.max_total_memory >= 1, "serve: --max-total-memory must be at least 1 byte");
  dtypes_ = backend_dtypes(*backend_);
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
    // Every pending connection is taken; whether a client may stay is decided at HELLO
    // (admit), so no connection is refused here.
    std::vector<Accepted> accepted = accept_pending(listener_, 100);
    join_finished(connections_, conn_mutex_);
    if (stopping_) break;
    for (Accepted& a : accepted) {
      std::lock_guard lock(conn_mutex_);
      limit_handshakes();
      auto c = std::make_unique<Connection>();
      c->socket = std::move(a.socket);
      c->peer = std::move(a.peer);
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

void Server::close_for(Connection& c, const std::string& why) {
  c.closing = why;
  // Wakes the connection's thread (its wait for a request ends) without closing the sending
  // side, so the thread itself can still send the ERROR: a socket keeps a single writer.
  if (c.socket.open()) ::shutdown(c.socket.fd(), SHUT_RD);
}

void Server::limit_handshakes() {
  std::vector<Connection*> waiting;  // oldest first
  std::map<std::string, int> per_peer;
  for (auto& c : connections_) {
    if (c->stage == Connection::Stage::Handshake && c->closing.empty()) {
      waiting.push_back(c.get());
      ++per_peer[c->peer];
    }
  }
  if (int(waiting.size()) < opts_.max_handshakes) return;
  // The address with the most connections waiting pays: a flood from one host closes its
  // own connections, not another host's clients.
  std::string peer;
  int most = 0;
  for (auto& [p, n] : per_peer)
    if (n > most) peer = p, most = n;
  // A real client sends HELLO as soon as it has connected, so one that has sent nothing yet
  // is the likelier squatter; only if every one has begun does the oldest go.
  Connection* victim = nullptr;
  for (Connection* c : waiting) {
    if (c->peer != peer) continue;
    if (!victim) victim = c;
    if (!c->heard && !wait_readable(c->socket.fd(), 0)) {
      victim = c;
      break;
    }
  }
  close_for(*victim, "rpc: closed before HELLO to make room: " + std::to_string(waiting.size()) +
                         " connections were waiting to say HELLO");
}

void Server::admit(Connection& c) {
  std::lock_guard lock(conn_mutex_);
  if (!c.closing.empty()) throw Error(c.closing);  // made room for another while saying HELLO
  const auto now = Clock::now();
  const auto min_idle = std::chrono::milliseconds(opts_.evict_min_idle_ms);
  int clients = 0;
  Connection* idlest = nullptr;
  for (auto& o : connections_) {
    if (o.get() == &c || !o->closing.empty() || o->stage == Connection::Stage::Handshake ||
        o->stage == Connection::Stage::Closed)
      continue;
    ++clients;
    if (o->stage == Connection::Stage::Idle && now - o->since >= min_idle &&
        (!idlest || o->since < idlest->since))
      idlest = o.get();
  }
  if (clients >= opts_.max_connections) {
    const std::string n = std::to_string(clients);
    TAPML_REQUIRE(idlest, "rpc: server busy: " + n + (clients == 1 ? " client" : " clients") +
                              " connected, none idle for " +
                              duration_text(opts_.evict_min_idle_ms) +
                              " (tapml serve --max-connections)");
    auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(now - idlest->since);
    close_for(*idlest, "rpc: closed after " + duration_text(idle.count()) +
                           " idle to make room for a new client (tapml serve --max-connections " +
                           std::to_string(opts_.max_connections) + ")");
    ++stats_.closed_idle;
  }
  c.stage = Connection::Stage::Busy;
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
  using Stage = Connection::Stage;
  const auto hello_deadline = Clock::now() + std::chrono::milliseconds(opts_.hello_timeout_ms);
  std::vector<uint8_t> payload;
  std::string farewell;  // an ERROR to send before closing, saying why
  auto closing = [&] {
    std::lock_guard lock(conn_mutex_);
    if (!c.closing.empty()) farewell = c.closing;
    return !c.closing.empty();
  };
  for (;;) {
    // Wait for a request to begin: until the handshake's deadline, then up to the idle
    // timeout. Another thread may end the wait early by closing this connection.
    int wait = c.greeted ? (opts_.idle_timeout_ms > 0 ? opts_.idle_timeout_ms : -1)
                         : ms_until(hello_deadline);
    bool ready = wait_readable(c.socket.fd(), wait);
    {
      std::lock_guard lock(conn_mutex_);
      if (!c.closing.empty()) {
        farewell = c.closing;
        break;
      }
      if (ready && c.greeted) c.stage = Stage::Busy;  // from now on not to be closed as idle
      if (ready && !c.greeted) c.heard = true;
      if (!ready && c.greeted) ++stats_.closed_idle;
    }
    if (!ready) {
      farewell = c.greeted ? "rpc: closed after " + duration_text(opts_.idle_timeout_ms) +
                                 " without a request (tapml serve --idle-timeout)"
                           : "rpc: no HELLO within " + duration_text(opts_.hello_timeout_ms) +
                                 " of connecting";
      break;
    }
    Message reply;
    bool keep = true;
    try {
      // A frame that has begun must complete; before HELLO, within the handshake's deadline.
      auto deadline = c.greeted ? Clock::now() + std::chrono::milliseconds(opts_.frame_timeout_ms)
                                : hello_deadline;
      if (!read_frame(c.socket, payload, opts_.max_frame_bytes, deadline)) {
        closing();  // the end of the stream may be our own doing
        break;
      }
    } catch (const Error& e) {
      // Oversized or zero frames, timeouts mid-frame: the stream cannot be trusted further.
      if (!closing()) {
        std::lock_guard lock(conn_mutex_);
        ++stats_.protocol_errors;
        std::string what = e.what();
        if (!c.greeted && dynamic_cast<const Timeout*>(&e))
          farewell =
              "rpc: no HELLO within " + duration_text(opts_.hello_timeout_ms) + " of connecting";
        else
          farewell = what.rfind("rpc:", 0) == 0 ? what : "rpc: " + what;
      }
      break;
    }
    if (!c.greeted && closing()) break;  // made room for another while its HELLO came in
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
    std::lock_guard lock(conn_mutex_);
    if (c.greeted) c.stage = Stage::Idle;
    c.since = Clock::now();
  }
  {
    std::lock_guard lock(conn_mutex_);
    c.stage = Stage::Closed;
  }
  if (!farewell.empty()) {
    try {
      c.socket.send_frame(error_reply(farewell), 1000);
    } catch (const Error&) {
    }
  }
  release(c);
  c.socket.shutdown();
}

bool Server::handle_request(Connection& c, const Message& m, Message& reply) {
  if (!c.greeted) {
    if (m.type != MsgType::Hello) throw Error("rpc: expected HELLO first, got " + msg_name(m.type));
    // Read by clients of any version (a version 1 client shows it after "refused the
    // connection: "), so it names both versions in words.
    if (m.hello.version != kProtocolVersion)
      throw Error("rpc: client speaks protocol " + std::to_string(m.hello.version) +
                  ", this server " + std::to_string(kProtocolVersion) +
                  " (use the same TapML release on both machines)");
    if (!opts_.token.empty() && m.hello.token != opts_.token)
      throw Error(std::string("rpc: ") +
                  (m.hello.token.empty() ? "this server requires a token (tcp://HOST:PORT?token=T)"
                                         : "wrong token"));
    admit(c);
    c.greeted = true;
    reply.type = MsgType::HelloOk;
    HelloOk& h = reply.hello_ok;
    const BackendInfo& info = backend_->info();
    h.name = info.name.substr(0, kMaxString);
    h.device = info.device.substr(0, kMaxString);
    h.max_buffer_bytes =
        std::min<uint64_t>({info.max_buffer_bytes, opts_.max_memory, opts_.max_total_memory});
    h.memory_bytes = opts_.max_memory;
    h.total_memory_bytes = opts_.max_total_memory;
    h.cache_bytes = opts_.cache_bytes;
    h.max_connections = uint32_t(opts_.max_connections);
    h.idle_timeout_ms = uint32_t(opts_.idle_timeout_ms);
    h.max_frame_bytes = opts_.max_frame_bytes;
    h.capabilities = opts_.cache_bytes > 0 ? kCapHashProbe : 0;
    for (const OpDef& d : all_ops()) h.ops.push_back(std::string(d.name));
    h.dtypes = dtypes_;
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

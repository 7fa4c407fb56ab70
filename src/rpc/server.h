// The device server behind `tapml serve`: wraps one local backend and lets clients reach it
// over TCP with the protocol of rpc/protocol.h.
//
// Contract: every request is validated before it reaches the wrapped backend (buffer ids
// belong to the asking connection, byte ranges and tensors lie inside their buffers, ops,
// attributes, dtypes and shapes agree with the op catalog). A connection sees only its own
// buffers, is capped at `max_memory` bytes, and has its buffers freed when it goes away; all
// buffers and the hash-probe cache together are capped at `max_total_memory` bytes.
// A malformed frame ends that connection with an ERROR message; other connections and the
// server carry on. Calls into the wrapped backend are serialized by one mutex.
//
// Who is served: at most `max_connections` clients that have said HELLO, plus at most
// `max_handshakes` connections that have not yet, each of which must say it within
// `hello_timeout_ms`. One more connection waiting for HELLO closes the oldest of those from
// the busiest address (one that has sent nothing, if any), so silent connections cannot keep
// clients out. A client that
// sends nothing for `idle_timeout_ms` is closed; a client saying HELLO to a full server takes
// the place of the one idle longest (if idle for `evict_min_idle_ms`), or is refused. Every
// connection the server closes first gets an ERROR saying why.
#pragma once
#include <atomic>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "backend/backend.h"
#include "rpc/socket.h"

namespace tapml::rpc {

// Half of this machine's physical memory (sysconf), or 8 GiB where that cannot be read: the
// default server-wide cap, leaving the rest to the system and the wrapped backend's own needs.
uint64_t default_total_memory();

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: any free port
  std::string token;  // required of clients when not empty; required to bind off loopback
  uint64_t max_memory = uint64_t(4) << 30;  // buffer bytes per connection
  // Buffer bytes of all connections plus the hash-probe cache; the cache gives way first.
  uint64_t max_total_memory = default_total_memory();
  uint64_t cache_bytes = uint64_t(1) << 30;  // server-wide hash-probe cache
  uint64_t cache_min_bytes = 4096;           // smaller writes are not worth a probe
  uint32_t max_frame_bytes = kDefaultFrameBytes;
  int max_connections = 32;      // clients (connections past HELLO) served at once
  int max_handshakes = 16;       // connections not yet past HELLO, besides those
  int frame_timeout_ms = 10000;  // a frame that has begun must arrive within this
  int hello_timeout_ms = 3000;   // the whole HELLO must arrive within this of connecting
  int idle_timeout_ms = 600000;  // a client silent this long between requests is closed; 0: never
  // A full server closes a client to make room for a new one only if idle this long, so
  // clients in active use do not take turns evicting each other.
  int evict_min_idle_ms = 1000;
};

struct ServerStats {
  uint64_t connections = 0, protocol_errors = 0, cache_hits = 0, cache_hit_bytes = 0;
  uint64_t closed_idle = 0;  // clients closed after the idle timeout or to make room
  uint64_t buffer_bytes = 0, cache_bytes = 0;  // held now, by all connections / by the cache
};

class Server {
 public:
  // Binds and listens; throws Error (e.g. a non-loopback host without a token).
  Server(std::unique_ptr<Backend> backend, ServerOptions options);
  ~Server();
  uint16_t port() const { return port_; }
  const ServerOptions& options() const { return opts_; }
  // Accepts and serves connections until stop(); each gets its own thread.
  void serve();
  // Makes serve() return and closes every connection; safe from any thread.
  void stop();
  // Only flags serve() to return (within 100 ms); async-signal-safe.
  void interrupt() { stopping_ = true; }
  ServerStats stats() const;

 private:
  struct Connection;
  void handle(Connection& c);
  bool handle_request(Connection& c, const Message& m, Message& reply);
  // Checks the call (validate()); with place_buffers, also that every tensor lies in a buffer
  // of this connection, and gives the call with the backend's buffer ids.
  void validate_call(Connection& c, const OpCall& call, OpCall& translated, bool place_buffers);
  void release(Connection& c);
  // Past HELLO: takes a client's place, closing the longest-idle client if all are taken, or
  // throws "server busy". Takes conn_mutex_.
  void admit(Connection& c);
  // Before a new connection is served: keeps those still to say HELLO within their budget.
  // Called with conn_mutex_ held.
  void limit_handshakes();
  // Has c's thread send ERROR `why` and close c, at its next chance (c is idle or waiting for
  // HELLO, so its thread is not writing). Called with conn_mutex_ held.
  void close_for(Connection& c, const std::string& why);
  // Makes room for `size` more buffer bytes under the server-wide cap, evicting cached bytes
  // if need be, or throws naming both caps. Called with backend_mutex_ held.
  void reserve(const Connection& c, uint64_t size);
  void evict_cache_until(uint64_t cache_limit);

  std::unique_ptr<Backend> backend_;
  std::mutex backend_mutex_;  // also guards the cache
  ServerOptions opts_;
  std::vector<DType> dtypes_;  // what HELLO_OK lists: the dtypes the backend takes
  Socket listener_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};

  mutable std::mutex conn_mutex_;
  std::list<std::unique_ptr<Connection>> connections_;
  ServerStats stats_;

  // Content cache: (hash, size) -> bytes, evicted oldest first.
  std::map<std::pair<std::string, uint64_t>, std::shared_ptr<std::vector<uint8_t>>> cache_;
  std::list<std::pair<std::string, uint64_t>> cache_order_;
  // Changed under backend_mutex_; atomic so stats() need not wait for a running call.
  std::atomic<uint64_t> cache_used_{0};
  std::atomic<uint64_t> buffers_used_{0};  // all connections' buffers
};

}  // namespace tapml::rpc

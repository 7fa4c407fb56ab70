// Blocking TCP sockets with deadlines: the transport that carries protocol frames
// (rpc/protocol.h) between `tapml serve` and the tcp:// backend. Every wait is bounded by
// poll(), so a peer that stops talking becomes an Error, never a hang; sends never raise
// SIGPIPE. Errors are tapml::Error with the cause ("connection closed by peer", "timed out").
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "rpc/protocol.h"

namespace tapml::rpc {

// The Error a wait past its deadline throws ("timed out waiting to receive").
class Timeout : public Error {
 public:
  using Error::Error;
};

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { close(); }

  int fd() const { return fd_; }
  bool open() const { return fd_ >= 0; }
  // Gives up ownership of the fd (the caller closes it); the Socket is then closed.
  int release() { return std::exchange(fd_, -1); }
  void close();
  // Wakes any thread blocked on this socket (shutdown(2)) without releasing the fd.
  void shutdown();

  // timeout_ms < 0: wait forever.
  void send_all(const void* data, size_t size, int timeout_ms);
  // Fills `size` bytes. Returns false on a clean end of stream before the first byte when
  // eof_ok; throws Error on timeout, error, or end of stream mid-way.
  bool recv_all(void* data, size_t size, int timeout_ms, bool eof_ok = false);

  void send_frame(const Message& m, int timeout_ms);
  // Sends `m` (whose own data is empty) followed by `size` bytes as one frame: a WRITE or
  // DATA without copying the bulk bytes into a message first.
  void send_frame_with_data(const Message& m, const void* data, size_t size, int timeout_ms);
  // The next frame's payload, or false at a clean end of stream before a frame begins.
  // `first_byte_timeout_ms` bounds the wait for a frame to start, `timeout_ms` the rest.
  bool recv_frame(std::vector<uint8_t>& payload, uint32_t max_frame_bytes,
                  int first_byte_timeout_ms, int timeout_ms);

 private:
  int fd_ = -1;
};

Socket connect_tcp(const std::string& host, uint16_t port, int timeout_ms);
// Binds and listens; port 0 picks a free port (see bound_port).
Socket listen_tcp(const std::string& host, uint16_t port);
uint16_t bound_port(const Socket& s);

struct Accepted {
  Socket socket;     // TCP_NODELAY set
  std::string peer;  // the peer's numeric address, without its port
};
// Waits up to timeout_ms for `listener` (non-blocking) to have connections and takes every one
// pending, so
// a burst cannot fill the listen backlog; none when the wait ends without any.
std::vector<Accepted> accept_pending(const Socket& listener, int timeout_ms);

// Joins the threads of the connections in `list` whose `done` is set and drops them (the
// joins happen outside `mutex`, which connection threads also take), so a long-lived server
// does not accumulate threads. C has `std::thread thread` and `std::atomic<bool> done`.
template <class C>
void join_finished(std::list<std::unique_ptr<C>>& list, std::mutex& mutex) {
  std::list<std::unique_ptr<C>> finished;
  {
    std::lock_guard lock(mutex);
    for (auto it = list.begin(); it != list.end();) {
      auto next = std::next(it);
      if ((*it)->done) finished.splice(finished.end(), list, it);
      it = next;
    }
  }
  for (auto& c : finished) c->thread.join();
}
// Splits "host:port" (a bare port means 127.0.0.1); throws Error if malformed.
std::pair<std::string, uint16_t> parse_host_port(const std::string& text);
bool is_loopback(const std::string& host);

}  // namespace tapml::rpc

#include "rpc/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include "core/error.h"

namespace tapml::rpc {

namespace {

using Clock = std::chrono::steady_clock;

// Milliseconds left until `deadline`, or -1 for none.
int remaining(Clock::time_point deadline, bool forever) {
  if (forever) return -1;
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : int(left);
}

void wait_for(int fd, short events, Clock::time_point deadline, bool forever, const char* what) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, remaining(deadline, forever));
    if (r > 0) return;  // ready, or an error/hangup the next call will report
    if (r == 0) throw Timeout(std::string("timed out waiting to ") + what);
    if (errno != EINTR) throw Error(std::string("poll failed: ") + std::strerror(errno));
  }
}

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

void Socket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Socket::shutdown() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

void Socket::send_all(const void* data, size_t size, int timeout_ms) {
  TAPML_REQUIRE(fd_ >= 0, "socket is closed");
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    wait_for(fd_, POLLOUT, deadline, timeout_ms < 0, "send");
    ssize_t n = ::send(fd_, p, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      throw Error(std::string("send failed: ") + std::strerror(errno));
    }
    p += n;
    size -= size_t(n);
  }
}

bool Socket::recv_all(void* data, size_t size, int timeout_ms, bool eof_ok) {
  TAPML_REQUIRE(fd_ >= 0, "socket is closed");
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms < 0 ? 0 : timeout_ms);
  char* p = static_cast<char*>(data);
  size_t got = 0;
  while (got < size) {
    wait_for(fd_, POLLIN, deadline, timeout_ms < 0, "receive");
    ssize_t n = ::recv(fd_, p + got, size - got, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      throw Error(std::string("receive failed: ") + std::strerror(errno));
    }
    if (n == 0) {
      if (got == 0 && eof_ok) return false;
      throw Error("connection closed by peer");
    }
    got += size_t(n);
  }
  return true;
}

void Socket::send_frame(const Message& m, int timeout_ms) {
  std::vector<uint8_t> frame = encode_frame(m);
  send_all(frame.data(), frame.size(), timeout_ms);
}

void Socket::send_frame_with_data(const Message& m, const void* data, size_t size, int timeout_ms) {
  std::vector<uint8_t> head = encode_frame(m);
  uint64_t n = uint64_t(head.size() - 4) + size;
  TAPML_REQUIRE(n <= kMaxFrameBytes,
                "rpc: frame of " + std::to_string(n) + " bytes exceeds the limit");
  for (int i = 0; i < 4; ++i) head[i] = uint8_t(n >> (8 * i));
  send_all(head.data(), head.size(), timeout_ms);
  send_all(data, size, timeout_ms);
}

bool Socket::recv_frame(std::vector<uint8_t>& payload, uint32_t max_frame_bytes,
                        int first_byte_timeout_ms, int timeout_ms) {
  uint8_t header[4];
  if (!recv_all(header, 1, first_byte_timeout_ms, true)) return false;
  recv_all(header + 1, 3, timeout_ms);
  uint32_t n = frame_length(header, max_frame_bytes);
  payload.resize(n);
  recv_all(payload.data(), n, timeout_ms);
  return true;
}

std::pair<std::string, uint16_t> parse_host_port(const std::string& text) {
  std::string host = "127.0.0.1", port = text;
  if (auto c = text.rfind(':'); c != std::string::npos) {
    host = text.substr(0, c);
    port = text.substr(c + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
  }
  TAPML_REQUIRE_USAGE(!host.empty(), "'" + text + "': empty host (expected HOST:PORT)");
  TAPML_REQUIRE_USAGE(!port.empty() && port.size() <= 5 &&
                          port.find_first_not_of("0123456789") == std::string::npos,
                      "'" + text + "': port must be a number (expected HOST:PORT)");
  int p = std::stoi(port);
  TAPML_REQUIRE_USAGE(p <= 65535, "'" + text + "': port above 65535");
  return {host, uint16_t(p)};
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

namespace {
using AddressList = std::unique_ptr<addrinfo, void (*)(addrinfo*)>;

// The addresses of host:port, for connecting or (passive) for listening.
AddressList resolve(const std::string& host, uint16_t port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  TAPML_REQUIRE(rc == 0, "cannot resolve '" + host + "': " + gai_strerror(rc));
  return AddressList(res, ::freeaddrinfo);
}
}  // namespace

Socket connect_tcp(const std::string& host, uint16_t port, int timeout_ms) {
  AddressList addresses = resolve(host, port, false);
  std::string last = "no address";
  for (addrinfo* a = addresses.get(); a; a = a->ai_next) {
    Socket s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!s.open()) continue;
    int flags = ::fcntl(s.fd(), F_GETFL);
    ::fcntl(s.fd(), F_SETFL, flags | O_NONBLOCK);
    int r = ::connect(s.fd(), a->ai_addr, a->ai_addrlen);
    if (r < 0 && errno == EINPROGRESS) {
      pollfd p{s.fd(), POLLOUT, 0};
      r = ::poll(&p, 1, timeout_ms);
      if (r == 0) {
        last = "timed out";
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        last = std::strerror(err);
        continue;
      }
      r = 0;
    }
    if (r < 0) {
      last = std::strerror(errno);
      continue;
    }
    ::fcntl(s.fd(), F_SETFL, flags);
    set_nodelay(s.fd());
    return s;
  }
  throw Error("cannot connect: " + last);
}

Socket listen_tcp(const std::string& host, uint16_t port) {
  AddressList addresses = resolve(host, port, true);
  std::string last = "no address";
  for (addrinfo* a = addresses.get(); a; a = a->ai_next) {
    Socket s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!s.open()) continue;
    int one = 1;
    ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(s.fd(), a->ai_addr, a->ai_addrlen) == 0 && ::listen(s.fd(), SOMAXCONN) == 0) {
      return s;
    }
    last = std::strerror(errno);
  }
  throw Error("cannot listen on " + host + ":" + std::to_string(port) + ": " + last);
}

uint16_t bound_port(const Socket& s) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(s.fd(), reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

std::vector<Accepted> accept_pending(const Socket& listener, int timeout_ms) {
  std::vector<Accepted> out;
  pollfd p{listener.fd(), POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return out;
  for (;;) {
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof addr;
    int fd = ::accept4(listener.fd(), reinterpret_cast<sockaddr*>(&addr), &addr_len, SOCK_CLOEXEC);
    if (fd < 0) break;
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char host[INET6_ADDRSTRLEN] = "?";
    if (addr.ss_family == AF_INET)
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, host, sizeof host);
    else if (addr.ss_family == AF_INET6)
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr, host,
                  sizeof host);
    out.push_back({Socket(fd), host});
  }
  return out;
}

}  // namespace tapml::rpc

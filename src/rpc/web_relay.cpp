#include "rpc/web_relay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "rpc/protocol.h"
#include "rpc/transport.h"
#include "rpc/web_files.h"

namespace tapml::rpc {

namespace {

using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

// A binary message holds a frame of at most the protocol's limit, plus its length prefix.
constexpr size_t kMaxMessageBytes = size_t(kMaxFrameBytes) + 4;

std::string peer_of(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  auto* a = reinterpret_cast<sockaddr_in*>(&ss);
  ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
  return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
}

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return false;
  return true;
}

std::string json_text(const nlohmann::json& j) { return j.dump(-1, ' ', true); }

// An ERROR frame, whole (with its length prefix), as a binary message carries it.
std::vector<uint8_t> error_frame(const std::string& text) {
  Message m;
  m.type = MsgType::Error;
  m.text = text.substr(0, kMaxString);
  return encode_frame(m);
}

std::string seconds(int ms) {
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

}  // namespace

struct WebRelay::Connection {
  std::thread thread;
  // The accepted socket, kept open while the thread works on a duplicate of it, so stop() can
  // shutdown(2) it without racing the thread closing it; -1 once the thread has finished.
  int fd = -1;
  std::atomic<bool> done{false};
  ~Connection() {
    if (fd >= 0) ::close(fd);
  }
};

struct WebRelay::Client {
  std::string peer;
  std::shared_ptr<WebSocket> ws;
};

struct WebRelay::Device {
  std::string name, peer, adapter, runtime;
  std::shared_ptr<WebSocket> ws;
  // Guarded by the relay's mutex:
  std::shared_ptr<Client> client;  // the paired client, if any
  bool ending = false;             // session-end is being sent; not yet free for another
};

WebRelay::WebRelay(WebRelayOptions o) : opts_(std::move(o)) {
  TAPML_REQUIRE(is_loopback(opts_.host) || !opts_.token.empty(),
                "serve-web: listening on " + opts_.host +
                    " (not loopback) needs a token (--token), since anyone who can reach the "
                    "port could otherwise drive the devices and see their data");
  TAPML_REQUIRE(opts_.ping_interval_ms > 0 && opts_.device_timeout_ms > opts_.ping_interval_ms,
                "serve-web: the device timeout must be longer than the ping interval");
  listener_ = listen_tcp(opts_.host, opts_.port);
  int flags = ::fcntl(listener_.fd(), F_GETFL);
  ::fcntl(listener_.fd(), F_SETFL, flags | O_NONBLOCK);
  port_ = bound_port(listener_);
}

WebRelay::~WebRelay() { stop(); }

std::string WebRelay::page_url(const std::string& name) const {
  std::string host =
      opts_.host.find(':') != std::string::npos ? "[" + opts_.host + "]" : opts_.host;
  if (host == "0.0.0.0" || host == "[::]") host = "127.0.0.1";
  std::string url = "http://" + host + ":" + std::to_string(port_) + "/?name=" + url_encode(name);
  if (!opts_.token.empty()) url += "&token=" + url_encode(opts_.token);
  return url;
}

std::string WebRelay::device_url(const std::string& name) const {
  std::string page = page_url(name);
  size_t q = page.find("/?");
  return "ws" + page.substr(4, q - 4) + "/ws/device?" + page.substr(q + 2);
}

void WebRelay::start() {
  TAPML_REQUIRE(!serve_thread_.joinable(), "serve-web: the relay is already running");
  serve_thread_ = std::thread([this] { serve(); });
}

void WebRelay::stop() {
  stopping_ = true;
  changed_.notify_all();
  if (serve_thread_.joinable()) serve_thread_.join();
}

std::vector<WebDeviceStatus> WebRelay::devices() const {
  std::lock_guard lock(mutex_);
  std::vector<WebDeviceStatus> out;
  for (auto& [name, d] : devices_)
    out.push_back({name, d->peer, d->adapter, d->runtime, !!d->client});
  return out;
}

void WebRelay::say(const std::string& line) {
  if (!opts_.log) return;
  std::lock_guard lock(log_mutex_);
  opts_.log(line);
}

void WebRelay::serve() {
  while (!stopping_) {
    std::vector<Accepted> accepted = accept_pending(listener_, 100);
    join_finished(connections_, mutex_);
    if (stopping_) break;
    for (Accepted& a : accepted) {
      std::lock_guard lock(mutex_);
      auto c = std::make_unique<Connection>();
      c->fd = a.socket.release();
      Connection* raw = c.get();
      connections_.push_back(std::move(c));
      raw->thread = std::thread([this, raw] {
        handle(*raw);
        raw->done = true;
      });
    }
  }
  // Wake every connection (blocked reads fail at once), then wait for them to finish.
  std::list<std::unique_ptr<Connection>> all;
  {
    std::lock_guard lock(mutex_);
    for (auto& c : connections_)
      if (c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);
    all.swap(connections_);
  }
  changed_.notify_all();
  for (auto& c : all) c->thread.join();
}

void WebRelay::handle(Connection& c) {
  Socket socket(::fcntl(c.fd, F_DUPFD_CLOEXEC, 0));
  const int t = opts_.handshake_timeout_ms;
  try {
    HttpRequest r;
    try {
      r = read_http_request(socket, t);
    } catch (const Error& e) {
      send_http_error(socket, 400, std::string("bad request: ") + e.what(), t);
      throw;
    }
    bool ws_endpoint = r.path == "/ws/device" || r.path == "/ws/client";
    if (ws_endpoint) {
      // A page of another site must not drive the devices through the user's browser.
      std::string origin = r.header("origin");
      if (!origin.empty() && origin != "http://" + r.header("host")) {
        say("refused " + r.path + " from " + peer_of(socket.fd()) + ": origin " +
            printable(origin) + " is not this relay's page");
        send_http_error(socket, 403,
                        "origin " + printable(origin) + " is not this relay's page (http://" +
                            printable(r.header("host")) + ")",
                        t);
      } else if (!opts_.token.empty() && r.query["token"] != opts_.token) {
        say("refused " + r.path + " from " + peer_of(socket.fd()) + ": wrong or missing token");
        send_http_error(socket, 403,
                        "wrong or missing token: open the URL `tapml serve-web` printed", t);
      } else if (r.path == "/ws/device") {
        serve_device(c, std::move(socket), r);
      } else {
        serve_client(c, std::move(socket), r);
      }
    } else if (r.method != "GET" && r.method != "HEAD") {
      send_http_error(socket, 405, "only GET is served here", t);
    } else {
      std::string path = r.path == "/" ? "index.html" : r.path.substr(1);
      auto bytes = find_web_file(opts_.web_dir, path);
      if (bytes) {
        if (r.method == "HEAD") bytes->clear();
        send_http_response(socket, 200, web_content_type(path), *bytes, opts_.send_timeout_ms);
      } else if (opts_.web_dir.empty() && embedded_web_files().empty()) {
        send_http_error(socket, 404,
                        "the WebGPU device page is not built into this tapml (its source tree "
                        "had no web/ files); start tapml serve-web with --web-dir DIR",
                        t);
      } else {
        send_http_error(socket, 404, "not found: " + printable(r.path), t);
      }
    }
  } catch (const Error&) {
    // Only this connection ends; the device and client loops log what matters themselves.
  }
  std::lock_guard lock(mutex_);
  ::close(c.fd);
  c.fd = -1;
}

void WebRelay::serve_device(Connection& c, Socket socket, const HttpRequest& r) {
  const int t = opts_.handshake_timeout_ms;
  auto q = r.query.find("name");
  std::string name = q == r.query.end() ? "default" : q->second;
  if (!valid_name(name)) {
    send_http_error(
        socket, 400,
        "device name '" + printable(name) + "' must be 1 to 64 letters, digits, '-', '_' or '.'",
        t);
    return;
  }
  auto d = std::make_shared<Device>();
  d->name = name;
  d->peer = peer_of(socket.fd());
  std::string other;  // the peer of the device already connected under this name
  {
    std::lock_guard lock(mutex_);
    if (auto it = devices_.find(name); it != devices_.end())
      other = it->second->peer;
    else
      devices_[name] = d;  // reserved now, so two tabs racing for a name cannot both get it
  }
  if (!other.empty()) {
    say("refused device '" + name + "' from " + d->peer + ": one of that name is connected");
    send_http_error(socket, 409,
                    "a WebGPU device named '" + name + "' is already connected (from " + other +
                        "); close that tab or use another ?name=",
                    t);
    return;
  }
  try {
    accept_websocket(socket, r, t);
    auto ws =
        std::make_shared<WebSocket>(std::move(socket), WebSocket::Role::Server, kMaxMessageBytes);
    {
      std::lock_guard lock(mutex_);
      d->ws = ws;
    }
    ws->send_text(json_text({{"type", "hello"}, {"relay", "tapml"}, {"version", 1}}), t);
  } catch (const Error&) {
    std::lock_guard lock(mutex_);
    devices_.erase(name);
    changed_.notify_all();
    return;
  }
  say("device '" + name + "' connected from " + d->peer);
  changed_.notify_all();
  device_loop(*d);
}

void WebRelay::device_loop(Device& d) {
  std::string reason;
  auto last_ping = Clock::now();
  try {
    while (!stopping_) {
      auto now = Clock::now();
      if (now - d.ws->last_heard() > Ms(opts_.device_timeout_ms)) {
        reason = "no answer to pings for " + seconds(opts_.device_timeout_ms);
        break;
      }
      if (now - last_ping >= Ms(opts_.ping_interval_ms)) {
        d.ws->send_ping(opts_.send_timeout_ms);
        last_ping = now;
      }
      WebSocket::Message m;
      try {
        m = d.ws->receive(std::min(250, opts_.ping_interval_ms), opts_.send_timeout_ms);
      } catch (const Timeout&) {
        continue;
      }
      if (m.kind == WebSocket::Kind::Closed) {
        reason = m.close_code == 1006
                     ? "connection closed"
                     : "it closed the connection (" + std::to_string(m.close_code) +
                           (m.data.empty() ? "" : ": " + printable(m.text())) + ")";
        break;
      }
      if (m.kind == WebSocket::Kind::Text) {
        nlohmann::json j = nlohmann::json::parse(m.text(), nullptr, false);
        if (j.is_object() && j.value("type", "") == "device-info") {
          std::lock_guard lock(mutex_);
          d.adapter = printable(j.value("adapter", ""));
          d.runtime = printable(j.value("runtime", ""));
          say("device '" + d.name + "': " + d.adapter +
              (d.runtime.empty() ? "" : " (" + d.runtime + ")"));
        }
        continue;
      }
      std::shared_ptr<Client> client;
      {
        std::lock_guard lock(mutex_);
        client = d.client;
      }
      if (!client) continue;  // outside a session a device has nothing to say; dropped
      std::vector<uint8_t> payload;
      try {
        payload = frame_payload(m.data, kMaxFrameBytes);
      } catch (const Error& e) {
        std::string why = std::string("the WebGPU device '") + d.name +
                          "' sent a malformed frame (" + e.what() + ")";
        try {
          client->ws->send_binary(error_frame("rpc: " + why), opts_.send_timeout_ms);
        } catch (const Error&) {
        }
        client->ws->send_close(1002, "", 1000);
        client->ws->shutdown();
        continue;  // the client's thread ends the session; the device may serve the next one
      }
      bool last = false;
      if (payload[0] == uint8_t(MsgType::Error)) {
        try {
          last = decode_message(payload).text.rfind("rpc:", 0) == 0;
        } catch (const Error&) {
        }
      }
      try {
        client->ws->send_binary(m.data, opts_.send_timeout_ms);
      } catch (const Error&) {
        last = true;
      }
      if (last) {  // the device ended the session; its client is closed after the ERROR
        client->ws->send_close(1000, "", 1000);
        client->ws->shutdown();
      }
    }
    if (stopping_) reason = "the relay is stopping";
  } catch (const Error& e) {
    reason = e.what();
  }
  std::shared_ptr<Client> client;
  {
    std::lock_guard lock(mutex_);
    devices_.erase(d.name);
    client.swap(d.client);
  }
  changed_.notify_all();
  if (client) {
    try {
      client->ws->send_binary(
          error_frame("rpc: the WebGPU device '" + d.name + "' went away (" + reason + ")"),
          opts_.send_timeout_ms);
    } catch (const Error&) {
    }
    client->ws->send_close(1000, "", 1000);
    client->ws->shutdown();
  }
  d.ws->send_close(1000, reason, 1000);
  say("device '" + d.name + "' left: " + reason);
}

void WebRelay::serve_client(Connection& c, Socket socket, const HttpRequest& r) {
  const int t = opts_.handshake_timeout_ms;
  auto q = r.query.find("name");
  std::string name = q == r.query.end() ? "default" : q->second;
  int wait_ms = opts_.default_wait_ms;
  if (auto w = r.query.find("wait_ms"); w != r.query.end()) {
    const std::string& v = w->second;
    bool digits = !v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == v.npos;
    if (!digits || std::stoll(v) > opts_.max_wait_ms) {
      send_http_error(
          socket, 400,
          "wait_ms must be a whole number from 0 to " + std::to_string(opts_.max_wait_ms), t);
      return;
    }
    wait_ms = int(std::stoll(v));
  }
  if (!valid_name(name)) {
    send_http_error(socket, 400, "device name '" + printable(name) + "' is not valid", t);
    return;
  }
  auto me = std::make_shared<Client>();
  me->peer = peer_of(socket.fd());
  accept_websocket(socket, r, t);
  me->ws =
      std::make_shared<WebSocket>(std::move(socket), WebSocket::Role::Server, kMaxMessageBytes);
  // Wait for the device to be there and free.
  auto deadline = Clock::now() + Ms(wait_ms);
  std::shared_ptr<Device> d;
  bool told = false;
  std::string busy_with;
  {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (stopping_) return;
      auto it = devices_.find(name);
      if (it != devices_.end() && it->second->ws && !it->second->client && !it->second->ending) {
        d = it->second;
        d->client = me;
        break;
      }
      busy_with = it != devices_.end() && it->second->client ? it->second->client->peer : "";
      if (it == devices_.end() && !told) {
        told = true;
        lock.unlock();
        me->ws->send_text(json_text({{"type", "waiting"}, {"url", page_url(name)}}),
                          opts_.send_timeout_ms);
        lock.lock();
        continue;
      }
      auto now = Clock::now();
      if (now >= deadline) break;
      changed_.wait_until(lock, std::min(deadline, now + Ms(250)));
      // A client that gave up while waiting is noticed here, not only at the deadline.
      if (me->ws->readable()) {
        lock.unlock();
        try {
          WebSocket::Message m = me->ws->receive(0, 1000);
          if (m.kind == WebSocket::Kind::Closed) return;
        } catch (const Timeout&) {
        } catch (const Error&) {
          return;
        }
        lock.lock();
      }
    }
  }
  if (!d) {
    std::string why = busy_with.empty()
                          ? "no WebGPU device named '" + name + "' connected within " +
                                seconds(wait_ms) + ": open " + page_url(name) +
                                " in a browser with WebGPU"
                          : "the WebGPU device '" + name + "' stayed busy with another client (" +
                                busy_with + ") for " + seconds(wait_ms);
    say("refused client " + me->peer + ": " + why);
    try {
      me->ws->send_binary(error_frame("rpc: " + why), opts_.send_timeout_ms);
    } catch (const Error&) {
    }
    me->ws->send_close(1000, "", 1000);
    return;
  }
  say("session: client " + me->peer + " -> device '" + name + "'");
  std::string reason = "client closed";
  try {
    d->ws->send_text(json_text({{"type", "session-start"}, {"client", me->peer}}),
                     opts_.send_timeout_ms);
  } catch (const Error&) {
    // The device's own thread notices it is gone and tells this client.
  }
  try {
    me->ws->send_text(json_text({{"type", "paired"},
                                 {"device", name},
                                 {"adapter", d->adapter},
                                 {"runtime", d->runtime}}),
                      opts_.send_timeout_ms);
    for (;;) {
      WebSocket::Message m;
      try {
        m = me->ws->receive(1000, opts_.send_timeout_ms);
      } catch (const Timeout&) {
        if (stopping_) break;
        continue;
      }
      if (m.kind == WebSocket::Kind::Closed) break;
      if (m.kind == WebSocket::Kind::Text) continue;
      try {
        frame_payload(m.data, kMaxFrameBytes);
      } catch (const Error& e) {
        reason = std::string("client sent a malformed frame: ") + e.what();
        me->ws->send_binary(error_frame(std::string("rpc: ") + e.what()), opts_.send_timeout_ms);
        me->ws->send_close(1002, "", 1000);
        break;
      }
      d->ws->send_binary(m.data, opts_.send_timeout_ms);
    }
  } catch (const Error& e) {
    reason = std::string("client connection: ") + e.what();
  }
  end_session(*d, me, reason);
}

void WebRelay::end_session(Device& d, const std::shared_ptr<Client>& client,
                           const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    if (d.client != client) return;  // the device went away first and said so
    d.client.reset();
    d.ending = true;
  }
  // Sent before the device is free again, so it never hears a session start before the last
  // one's end.
  try {
    d.ws->send_text(json_text({{"type", "session-end"}, {"reason", reason}}),
                    opts_.send_timeout_ms);
  } catch (const Error&) {
  }
  {
    std::lock_guard lock(mutex_);
    d.ending = false;
  }
  changed_.notify_all();
  say("session ended: client " + client->peer + ", device '" + d.name + "': " + reason);
}

}  // namespace tapml::rpc

// The relay behind `tapml serve-web`: an HTTP + WebSocket server that a browser tab (or the
// Node runner) connects OUT to as a WebGPU device, since a browser cannot listen, and that
// pairs each such device with one TapML client at a time (docs/protocol.md, "WebSocket
// transport and the browser relay").
//
//   GET /, GET /FILE   the device page (rpc/web_files.h), else 404
//   /ws/device?name=N&token=T              a device; a second one named N is refused (409)
//   /ws/client?name=N&token=T&wait_ms=MS   a client of device N (the webgpu backend)
//
// Contract: a bad token, or an Origin header other than http://<Host>, is refused with 403
// before any upgrade. Between a client and its device binary messages (one protocol frame
// each) are forwarded verbatim both ways; the device hears {"type":"session-start"} and
// {"type":"session-end"} around each session. A client for an absent or busy device waits up
// to its wait_ms (told {"type":"waiting","url":...} once when the device is absent), then gets
// an ERROR "rpc: ..." and is closed; when paired it gets {"type":"paired"}. Devices are pinged
// every ping_interval_ms and dropped after device_timeout_ms of silence; a device that goes
// away (or sends a frame that is not one whole protocol frame) ends its session, and its client
// gets the ERROR "rpc: the WebGPU device 'N' went away (...)" and is closed. Hostile input ends
// only its own connection. One thread per connection.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "rpc/socket.h"
#include "rpc/websocket.h"

namespace tapml::rpc {

struct WebRelayOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;    // 0: any free port
  std::string token;    // required of devices and clients when not empty; and to bind off loopback
  std::string web_dir;  // serve the page from this folder instead of the embedded files
  int ping_interval_ms = 2000;
  int device_timeout_ms = 6000;     // a device silent this long (pongs included) is dropped
  int handshake_timeout_ms = 5000;  // the HTTP request head must arrive within this
  int send_timeout_ms = 30000;      // one message must be sent within this
  int default_wait_ms = 30000;      // a client's wait for its device without ?wait_ms=
  int max_wait_ms = 86400000;
  // Called (from connection threads, one at a time) with one line per event: devices
  // connecting and leaving, sessions starting and ending, refusals.
  std::function<void(const std::string&)> log;
};

struct WebDeviceStatus {
  std::string name, peer, adapter, runtime;
  bool busy = false;  // in a session
};

class WebRelay {
 public:
  // Binds and listens; throws Error (e.g. a non-loopback host without a token).
  explicit WebRelay(WebRelayOptions options);
  ~WebRelay();
  WebRelay(const WebRelay&) = delete;
  WebRelay& operator=(const WebRelay&) = delete;

  uint16_t port() const { return port_; }
  const WebRelayOptions& options() const { return opts_; }
  // The page a device named `name` opens: http://HOST:PORT/?name=N[&token=T].
  std::string page_url(const std::string& name) const;
  // The device endpoint for `name`: ws://HOST:PORT/ws/device?name=N[&token=T].
  std::string device_url(const std::string& name) const;

  // Serves until stop() or interrupt().
  void serve();
  // serve() on a thread of its own; stop() (or the destructor) ends it.
  void start();
  // Ends serve() and every connection (promptly); safe from any thread.
  void stop();
  // Only flags serve() to return (within 100 ms); async-signal-safe.
  void interrupt() { stopping_ = true; }

  std::vector<WebDeviceStatus> devices() const;

 private:
  struct Connection;
  struct Device;
  struct Client;
  void handle(Connection& c);
  void serve_device(Connection& c, Socket socket, const HttpRequest& r);
  void serve_client(Connection& c, Socket socket, const HttpRequest& r);
  void device_loop(Device& d);
  void end_session(Device& d, const std::shared_ptr<Client>& client, const std::string& reason);
  void say(const std::string& line);

  WebRelayOptions opts_;
  Socket listener_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread serve_thread_;

  mutable std::mutex mutex_;  // devices_, connections_
  std::condition_variable changed_;
  std::map<std::string, std::shared_ptr<Device>> devices_;
  std::list<std::unique_ptr<Connection>> connections_;
  std::mutex log_mutex_;
};

}  // namespace tapml::rpc

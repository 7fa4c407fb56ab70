#include "support/running_server.h"

#include <sys/socket.h>

#include "backends/builtin.h"
#include "core/error.h"

namespace tapml::testing {

RunningServer::RunningServer(std::unique_ptr<Backend> backend, rpc::ServerOptions o) {
  const rpc::ServerOptions defaults;
  o.host = "127.0.0.1";
  o.port = 0;
  if (o.frame_timeout_ms == defaults.frame_timeout_ms) o.frame_timeout_ms = 500;
  if (o.hello_timeout_ms == defaults.hello_timeout_ms) o.hello_timeout_ms = 500;
  server_ = std::make_unique<rpc::Server>(std::move(backend), o);
  thread_ = std::thread([this] { server_->serve(); });
}

RunningServer::RunningServer(const std::string& backend_uri, rpc::ServerOptions o)
    : RunningServer(open_backend(backend_uri), std::move(o)) {}

void RunningServer::stop() {
  if (!thread_.joinable()) return;
  server_->stop();
  thread_.join();
}

rpc::Socket RunningServer::raw_client(bool hello, const std::string& token) const {
  rpc::Socket raw = rpc::connect_tcp("127.0.0.1", server_->port(), 1000);
  if (hello) {
    rpc::Message m;
    m.type = rpc::MsgType::Hello;
    m.hello.token = token;
    rpc::Message r = ask(raw, m);
    if (r.type != rpc::MsgType::HelloOk) throw Error("HELLO refused: " + r.text);
  }
  return raw;
}

rpc::Message ask(rpc::Socket& raw, const std::vector<uint8_t>& frame) {
  raw.send_all(frame.data(), frame.size(), 1000);
  std::vector<uint8_t> p;
  if (!raw.recv_frame(p, rpc::kMaxFrameBytes, 2000, 2000))
    throw Error("the server closed the connection without a reply");
  return rpc::decode_message(p);
}

rpc::Message ask(rpc::Socket& raw, const rpc::Message& m) { return ask(raw, rpc::encode_frame(m)); }

FakeServer::FakeServer(std::vector<uint8_t> first_reply, std::vector<uint8_t> reply)
    : listener_(rpc::listen_tcp("127.0.0.1", 0)) {
  thread_ = std::thread([this, first_reply, reply] {
    try {
      rpc::Socket c(::accept(listener_.fd(), nullptr, nullptr));
      std::vector<uint8_t> p;
      bool first = true;
      while (c.recv_frame(p, rpc::kMaxFrameBytes, 5000, 5000)) {
        const std::vector<uint8_t>& r = first ? first_reply : reply;
        c.send_all(r.data(), r.size(), 1000);
        first = false;
      }
    } catch (const Error&) {
    }
  });
}

FakeServer::~FakeServer() {
  listener_.shutdown();  // wakes accept() if no client came
  thread_.join();
}

std::string FakeServer::uri() const {
  return "tcp://127.0.0.1:" + std::to_string(rpc::bound_port(listener_));
}

}  // namespace tapml::testing

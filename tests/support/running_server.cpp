#include "support/running_server.h"

#include "backends/builtin.h"

namespace tapml::testing {

RunningServer::RunningServer(std::unique_ptr<Backend> backend, rpc::ServerOptions o) {
  o.host = "127.0.0.1";
  o.port = 0;
  if (o.frame_timeout_ms == rpc::ServerOptions{}.frame_timeout_ms) o.frame_timeout_ms = 500;
  o.hello_timeout_ms = 500;
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

}  // namespace tapml::testing

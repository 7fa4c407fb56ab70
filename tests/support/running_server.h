// A device server (rpc::Server) on a free loopback port, served by its own thread for the
// lifetime of the object: tests reach it as tcp://127.0.0.1:PORT.
#pragma once
#include <memory>
#include <string>
#include <thread>

#include "rpc/server.h"

namespace tapml::testing {

class RunningServer {
 public:
  // Serves `backend` (short frame and handshake timeouts, so broken clients fail fast).
  explicit RunningServer(std::unique_ptr<Backend> backend, rpc::ServerOptions o = {});
  // Serves the backend of that URI.
  explicit RunningServer(const std::string& backend_uri = "cpu?threads=1",
                         rpc::ServerOptions o = {});
  ~RunningServer() { stop(); }
  RunningServer(const RunningServer&) = delete;
  RunningServer& operator=(const RunningServer&) = delete;

  void stop();
  rpc::Server& server() { return *server_; }
  std::string uri(const std::string& query = "") const {
    return "tcp://127.0.0.1:" + std::to_string(server_->port()) + query;
  }

 private:
  std::unique_ptr<rpc::Server> server_;
  std::thread thread_;
};

}  // namespace tapml::testing

// A device server (rpc::Server) on a free loopback port, served by its own thread for the
// lifetime of the object: tests reach it as tcp://127.0.0.1:PORT, or speak the protocol
// themselves through raw_client() and ask(). FakeServer plays a server that misbehaves.
#pragma once
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "rpc/server.h"
#include "rpc/socket.h"

namespace tapml::testing {

class RunningServer {
 public:
  // Serves `backend`. Frame and handshake timeouts left at their defaults are shortened, so
  // broken clients fail fast.
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
  // A connection of our own; with `hello`, HELLO has been said (and HELLO_OK checked).
  rpc::Socket raw_client(bool hello = true, const std::string& token = "") const;

 private:
  std::unique_ptr<rpc::Server> server_;
  std::thread thread_;
};

// Sends one frame (or message) and returns the decoded reply; throws Error if the server
// closes the connection instead.
rpc::Message ask(rpc::Socket& raw, const std::vector<uint8_t>& frame);
rpc::Message ask(rpc::Socket& raw, const rpc::Message& m);

// A server on a free loopback port that answers one connection: its first frame with
// `first_reply`, every later one with `reply` (both whole frames, so they may be malformed
// or of another protocol version).
class FakeServer {
 public:
  FakeServer(std::vector<uint8_t> first_reply, std::vector<uint8_t> reply);
  ~FakeServer();
  std::string uri() const;

 private:
  rpc::Socket listener_;
  std::thread thread_;
};

}  // namespace tapml::testing

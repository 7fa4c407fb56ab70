#include "backends/remote/tcp_backend.h"

#include <algorithm>

#include "core/error.h"
#include "rpc/client.h"
#include "rpc/socket.h"

namespace tapml {

std::unique_ptr<Backend> make_tcp_backend(const BackendUri& uri) {
  uri.allow_params({"token", "timeout_ms", "call_timeout_ms", "hash_min"});
  rpc::ClientOptions o;
  o.where = "tcp://" + uri.target;
  o.uri = uri.text;
  o.kind = "tcp";
  TAPML_REQUIRE_USAGE(!uri.target.empty(),
                      "backend URI '" + uri.text + "': expected tcp://HOST:PORT");
  auto [host, port] = rpc::parse_host_port(uri.target);
  // Out-of-range values are errors, not clamped: timeout_ms=0 is a typo, not a request for
  // a one-millisecond timeout.
  constexpr int64_t kDay = 86400000;
  o.timeout_ms = int(uri.int_param("timeout_ms", 5000, 1, kDay));
  // Unless given, a run may take at least as long as a small request.
  o.call_timeout_ms = int(uri.params.count("call_timeout_ms")
                              ? uri.int_param("call_timeout_ms", 0, o.timeout_ms, kDay)
                              : std::max(120000, o.timeout_ms));
  o.hash_min = uint64_t(uri.int_param("hash_min", 4096, 0, INT64_MAX));
  o.token = uri.param("token", "");
  // Shown in reports and on terminals: whatever the server calls itself, printably.
  o.describe = [target = uri.target](const rpc::HelloOk& h) {
    return rpc::printable(h.name) + " (" + rpc::printable(h.device) + ") at " + target;
  };
  rpc::Socket socket;
  try {
    socket = rpc::connect_tcp(host, port, o.timeout_ms);
  } catch (const Error& e) {
    throw Error(o.where + ": " + e.what() + " (is `tapml serve` running there?)");
  }
  return rpc::connect_client(rpc::tcp_transport(std::move(socket)), std::move(o));
}

const TcpTransferStats* tcp_transfer_stats(const Backend& backend) {
  return rpc::client_transfer_stats(backend);
}

}  // namespace tapml

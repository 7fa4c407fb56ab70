// The client side of the device protocol: a Backend whose buffers and op calls live on a
// device reached through a FrameTransport (TCP to `tapml serve`, or a WebSocket to a WebGPU
// tab through `tapml serve-web`). The tcp:// and webgpu backends are this engine plus the way
// they connect.
//
// Contract: the constructor says HELLO and checks HELLO_OK (a refusal or another protocol
// version is an Error saying so). Errors the device reports come back with the device's
// message unchanged (control bytes escaped). A lost transport, a timeout, or the device
// closing the session (its ERROR starting "rpc:", even when it arrived unasked) makes this
// and every later call throw "<where>: connection lost (<reason>)"; free() then quietly does
// nothing, since the device has freed everything already.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "rpc/protocol.h"
#include "rpc/transport.h"

namespace tapml::rpc {

struct TransferStats {
  uint64_t requests = 0;
  uint64_t bytes_sent = 0;      // write payloads actually uploaded
  uint64_t bytes_skipped = 0;   // write payloads the server already held (hash probe hits)
  uint64_t bytes_received = 0;  // read payloads
};

struct ClientOptions {
  std::string where;             // how messages name the device: "tcp://HOST:PORT"
  std::string uri;               // BackendInfo::uri
  std::string kind;              // BackendInfo::name: "tcp", "webgpu"
  std::string token;             // HELLO's token
  int timeout_ms = 5000;         // a small request's reply
  int call_timeout_ms = 120000;  // a run's, a sync's or a bulk transfer's reply
  uint64_t hash_min = 4096;      // 0: no hash probe
  // Freed buffers up to this many bytes in all are kept and handed out again by alloc() of
  // the same size, without a round trip each (a decode step allocates and frees every
  // intermediate); they are freed on the device when an ALLOC is refused. 0: every free
  // frees.
  size_t reuse_bytes = 0;
  // BackendInfo::device from the device's HELLO_OK (whose strings are not yet printable()).
  std::function<std::string(const HelloOk&)> describe;
};

// Says HELLO over `transport` and returns the backend; throws Error if the device refuses.
std::unique_ptr<Backend> connect_client(std::unique_ptr<FrameTransport> transport,
                                        ClientOptions options);
// The counters of a backend made by connect_client; nullptr for any other backend.
const TransferStats* client_transfer_stats(const Backend& backend);

}  // namespace tapml::rpc

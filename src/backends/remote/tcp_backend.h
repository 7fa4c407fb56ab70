// The tcp:// backend: a Backend whose buffers and op calls live on a `tapml serve` device
// server (rpc/server.h), usable wherever a backend URI is.
//
// URI: tcp://HOST:PORT[?token=T][&timeout_ms=MS][&call_timeout_ms=MS][&hash_min=BYTES]
//   timeout_ms       wait for the reply to a small request (default 5000)
//   call_timeout_ms  wait for the reply to a run, a sync or a bulk transfer (default 120000)
//   hash_min         writes of at least this many bytes first ask whether the server already
//                    holds them (the hash probe; default 4096; 0 turns it off)
// Errors the device reports (an op failing, a bad range) come back as tapml::Error with the
// device's message unchanged. A lost connection or a timeout makes this and every later call
// throw "tcp://HOST:PORT: connection lost (...)"; free() then quietly does nothing, since the
// server has freed everything already.
#pragma once
#include <memory>

#include "backend/backend.h"
#include "backend/registry.h"

namespace tapml {

struct TcpTransferStats {
  uint64_t requests = 0;
  uint64_t bytes_sent = 0;      // write payloads actually uploaded
  uint64_t bytes_skipped = 0;   // write payloads the server already held (hash probe hits)
  uint64_t bytes_received = 0;  // read payloads
};

std::unique_ptr<Backend> make_tcp_backend(const BackendUri& uri);
// Counters of a backend made by make_tcp_backend; nullptr for any other backend.
const TcpTransferStats* tcp_transfer_stats(const Backend& backend);

}  // namespace tapml

// The tcp:// backend: a Backend whose buffers and op calls live on a `tapml serve` device
// server (rpc/server.h), usable wherever a backend URI is. The request engine is rpc/client.h.
//
// URI: tcp://HOST:PORT[?token=T][&timeout_ms=MS][&call_timeout_ms=MS][&hash_min=BYTES]
//   timeout_ms       wait for the reply to a small request (default 5000; 1 .. 86400000)
//   call_timeout_ms  wait for the reply to a run, a sync or a bulk transfer (default 120000,
//                    or timeout_ms if longer; timeout_ms .. 86400000)
//   hash_min         writes of at least this many bytes first ask whether the server already
//                    holds them (the hash probe; default 4096; 0 turns it off)
// A value out of range or not a whole number is an error naming the parameter.
// Errors the device reports (an op failing, a bad range) come back as tapml::Error with the
// device's message unchanged (control bytes escaped). A lost connection, a timeout, or the
// server closing the connection (its ERROR starting "rpc:", e.g. after its idle timeout, even
// when it arrived unasked) makes this and every later call throw "tcp://HOST:PORT: connection
// lost (...)" with the reason; free() then quietly does nothing, since the server has freed
// everything already. A server of another protocol version is "tcp://HOST:PORT: server
// speaks protocol N, this build M".
#pragma once
#include <memory>

#include "backend/backend.h"
#include "backend/registry.h"
#include "rpc/client.h"

namespace tapml {

using TcpTransferStats = rpc::TransferStats;

std::unique_ptr<Backend> make_tcp_backend(const BackendUri& uri);
// Counters of a backend made by make_tcp_backend; nullptr for any other backend.
const TcpTransferStats* tcp_transfer_stats(const Backend& backend);

}  // namespace tapml

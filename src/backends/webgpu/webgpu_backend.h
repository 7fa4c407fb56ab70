// The webgpu backend: a WebGPU device in a browser tab or in Node, reached through the relay
// of `tapml serve-web` (rpc/web_relay.h) and spoken to with the device protocol (rpc/client.h).
//
// URIs:
//   webgpu://HOST:PORT[/NAME]?token=T&wait_ms=MS   the tab NAME (default "default") of a running
//       `tapml serve-web`; while no such tab is connected it says once on stderr which URL to
//       open, and gives up after wait_ms (default 30000) with an error naming that URL.
//   webgpu:chromium[?wait_ms=MS]   starts a relay in this process (127.0.0.1, a free port, a
//       random token) and headless Chromium on its page (TAPML_CHROMIUM: the browser binary)
//   webgpu:node[?wait_ms=MS]       the same with the Node runner, TAPML_WEB_DIR/node-device.mjs
//       (default: this source tree's web/; TAPML_NODE: the node binary)
// Also timeout_ms, call_timeout_ms and hash_min as tcp:// (backends/remote/tcp_backend.h).
// The runner started by webgpu:chromium/node is killed with the backend. A device that goes
// away makes every call throw "<uri>: connection lost (the WebGPU device 'NAME' went away
// (...))" within the relay's liveness timeout (6 s).
#pragma once
#include <memory>

#include "backend/backend.h"
#include "backend/registry.h"

namespace tapml {

std::unique_ptr<Backend> make_webgpu_backend(const BackendUri& uri);

}  // namespace tapml

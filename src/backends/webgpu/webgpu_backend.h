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
//   limits=NAME:VALUE,...  (webgpu:chromium/node) the device holds to these lower WebGPU limits,
//       standing in for a smaller device, e.g. limits=maxStorageBufferBindingSize:134217728;
//       a tab takes the same from its page URL (&limits=...)
// Also timeout_ms, call_timeout_ms and hash_min as tcp:// (backends/remote/tcp_backend.h).
// The runner started by webgpu:chromium/node is killed with the backend. A device that goes
// away makes every call throw "<uri>: connection lost (the WebGPU device 'NAME' went away
// (...))" within the relay's liveness timeout (6 s).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/registry.h"
#include "rpc/web_relay.h"

namespace tapml {

std::unique_ptr<Backend> make_webgpu_backend(const BackendUri& uri);

// The Node runner (TAPML_WEB_DIR/node-device.mjs, default this source tree's web/) and the
// Chromium binary (TAPML_CHROMIUM, default /usr/lib/chromium/chromium) webgpu:node and
// webgpu:chromium start.
std::string node_runner_script();
std::string chromium_binary();
// The command line of a device runner, "node" or "chromium" (headless, SwiftShader's WebGPU,
// profile in `profile_dir`), serving as device `name` of `relay`, held to `limits` (NAME:VALUE,
// ...; "" for none).
std::vector<std::string> webgpu_runner_command(const std::string& kind, const rpc::WebRelay& relay,
                                               const std::string& name, const std::string& limits,
                                               const std::string& profile_dir);

}  // namespace tapml

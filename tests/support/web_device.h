// A WebGPU device for tests: a relay (rpc::WebRelay) on a free loopback port and a device
// runner connected to it, headless Chromium or the Node runner, started as webgpu:chromium
// and webgpu:node start theirs. Tests reach the device as uri() (webgpu://127.0.0.1:PORT/NAME),
// and can kill it, or open Chromium's DevTools port to look at the page.
#pragma once
#include <memory>
#include <string>

#include "backends/webgpu/device_process.h"
#include "rpc/web_relay.h"

namespace tapml::testing {

// Why a runner of `kind` ("node" or "chromium") cannot start here ("" when it can): node or
// web/node_modules missing, no Chromium binary.
std::string web_runner_unavailable(const std::string& kind);

struct WebDeviceOptions {
  std::string limits;     // NAME:VALUE,... the device holds to
  bool devtools = false;  // chromium: a DevTools port (devtools_port())
  int wait_ms = 90000;    // for the device to connect
};

class WebDevice {
 public:
  // Starts the relay and the runner and waits until the device has connected; throws Error
  // with the runner's last output if it does not.
  WebDevice(const std::string& kind, WebDeviceOptions o = {});
  ~WebDevice();
  WebDevice(const WebDevice&) = delete;
  WebDevice& operator=(const WebDevice&) = delete;

  const std::string& kind() const { return kind_; }
  std::string uri(const std::string& query = "") const;
  rpc::WebRelay& relay() { return *relay_; }
  // SIGKILL to the runner's whole process group (a tab or browser dying at once).
  void kill();
  // Chromium's DevTools port (WebDeviceOptions::devtools), read from its profile.
  int devtools_port() const;

 private:
  std::string kind_, name_ = "test";
  std::string profile_;
  std::unique_ptr<rpc::WebRelay> relay_;
  std::unique_ptr<DeviceProcess> process_;
};

// Chromium DevTools: evaluates `expression` in the page (the first page target) and returns
// its value as a string; captures a PNG screenshot of it.
std::string devtools_evaluate(int port, const std::string& expression);
std::string devtools_screenshot_png(int port);

}  // namespace tapml::testing

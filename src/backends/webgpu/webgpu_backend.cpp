#include "backends/webgpu/webgpu_backend.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>

#include "backend/forwarding_backend.h"
#include "backends/webgpu/device_process.h"
#include "core/error.h"
#include "rpc/client.h"
#include "rpc/web_relay.h"
#include "rpc/websocket.h"

#ifndef TAPML_SOURCE_WEB_DIR
#define TAPML_SOURCE_WEB_DIR "web"
#endif

namespace tapml {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kDay = 86400000;

struct Target {
  std::string host, name = "default", token;
  uint16_t port = 0;
  int wait_ms = 30000;
  bool announce = true;  // print the URL to open while waiting (not when we started the tab)
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// Opens a session with the device through the relay, or throws. `alive` is called while
// waiting; it throws when the device we started ourselves has died.
std::unique_ptr<Backend> connect(const Target& t, rpc::ClientOptions o,
                                 const std::function<void()>& alive) {
  rpc::Socket socket;
  try {
    socket = rpc::connect_tcp(t.host, t.port, o.timeout_ms);
  } catch (const Error& e) {
    throw Error(o.where + ": " + e.what() + " (is `tapml serve-web` running there?)");
  }
  std::string target =
      "/ws/client?name=" + rpc::url_encode(t.name) + "&wait_ms=" + std::to_string(t.wait_ms);
  if (!t.token.empty()) target += "&token=" + rpc::url_encode(t.token);
  std::string host = t.host.find(':') != std::string::npos ? "[" + t.host + "]" : t.host;
  try {
    rpc::connect_websocket(socket, host + ":" + std::to_string(t.port), target, o.timeout_ms);
  } catch (const Error& e) {
    throw Error(o.where + ": the relay refused the connection: " + e.what());
  }
  auto ws = std::make_unique<rpc::WebSocket>(std::move(socket), rpc::WebSocket::Role::Client,
                                             size_t(rpc::kMaxFrameBytes) + 4);
  // The relay's own deadline is wait_ms; this one only guards against a relay that never says.
  auto deadline = Clock::now() + std::chrono::milliseconds(t.wait_ms + 5000);
  std::string url;
  for (;;) {
    alive();
    rpc::WebSocket::Message m;
    try {
      m = ws->receive(200, o.timeout_ms);
    } catch (const rpc::Timeout&) {
      if (Clock::now() > deadline)
        throw Error(o.where + ": no WebGPU device '" + t.name + "' within " +
                    std::to_string(t.wait_ms) + " ms" + (url.empty() ? "" : ": open " + url));
      continue;
    } catch (const Error& e) {
      throw Error(o.where + ": lost the relay while waiting for the device: " + e.what());
    }
    if (m.kind == rpc::WebSocket::Kind::Closed)
      throw Error(o.where + ": the relay closed the connection while waiting for the device");
    if (m.kind == rpc::WebSocket::Kind::Binary) {
      std::string why = "unexpected frame from the relay";
      try {
        rpc::Message r = rpc::decode_message(rpc::frame_payload(m.data, rpc::kMaxFrameBytes));
        if (r.type == rpc::MsgType::Error)
          why = rpc::printable(r.text.rfind("rpc: ", 0) == 0 ? r.text.substr(5) : r.text);
      } catch (const Error& e) {
        why = e.what();
      }
      throw Error(o.where + ": " + why);
    }
    nlohmann::json j = nlohmann::json::parse(m.text(), nullptr, false);
    if (!j.is_object()) continue;
    std::string type = j.value("type", "");
    if (type == "paired") break;
    if (type == "waiting" && url.empty()) {
      url = rpc::printable(j.value("url", ""));
      if (t.announce)
        std::fprintf(stderr, "webgpu: waiting for a WebGPU tab: open %s in a browser with WebGPU\n",
                     url.c_str());
    }
  }
  return rpc::connect_client(rpc::websocket_transport(std::move(ws)), std::move(o));
}

// What a device started by this process needs besides its session: the in-process relay,
// the runner, Chromium's fresh profile folder. Destroyed after the session (LocalWebGpu).
struct LocalRunner {
  std::unique_ptr<rpc::WebRelay> relay;
  std::unique_ptr<DeviceProcess> runner;
  std::filesystem::path profile;

  ~LocalRunner() {
    runner.reset();
    relay.reset();
    if (!profile.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(profile, ec);
    }
  }
};

// The session with a device this process started; ends the session before the runner.
class LocalWebGpu : public ForwardingBackend {
 public:
  LocalWebGpu(std::unique_ptr<Backend> session, std::unique_ptr<LocalRunner> local)
      : ForwardingBackend(std::move(session)), local_(std::move(local)) {}
  ~LocalWebGpu() override { release_inner(); }

 private:
  std::unique_ptr<LocalRunner> local_;
};

std::string random_token() {
  std::random_device rd;
  char hex[33];
  for (int i = 0; i < 4; ++i) std::snprintf(hex + 8 * i, 9, "%08x", unsigned(rd()));
  return hex;
}

}  // namespace

std::string node_runner_script() {
  return env_or("TAPML_WEB_DIR", TAPML_SOURCE_WEB_DIR) + "/node-device.mjs";
}

std::string chromium_binary() { return env_or("TAPML_CHROMIUM", "/usr/lib/chromium/chromium"); }

std::vector<std::string> webgpu_runner_command(const std::string& kind, const rpc::WebRelay& relay,
                                               const std::string& name, const std::string& limits,
                                               const std::string& profile_dir) {
  if (kind == "node") {
    std::vector<std::string> argv = {env_or("TAPML_NODE", "node"), node_runner_script(), "--url",
                                     relay.device_url(name)};
    if (!limits.empty()) argv.push_back("--limits=" + limits);
    return argv;
  }
  TAPML_REQUIRE(kind == "chromium", "webgpu: unknown device runner '" + kind + "'");
  return {chromium_binary(),
          "--headless=new",
          "--no-sandbox",
          "--enable-unsafe-webgpu",
          "--enable-features=Vulkan",
          "--use-angle=swiftshader",
          "--use-webgpu-adapter=swiftshader",
          "--user-data-dir=" + profile_dir,
          relay.page_url(name) + (limits.empty() ? "" : "&limits=" + limits)};
}

namespace {

std::unique_ptr<Backend> start_local(const BackendUri& uri, rpc::ClientOptions o, Target t) {
  // Lower WebGPU limits for the device to hold to (NAME:VALUE,...), standing in for a
  // smaller device; the device checks the names against its adapter's.
  const std::string limits = uri.param("limits", "");
  TAPML_REQUIRE_USAGE(
      limits.empty() || std::regex_match(limits, std::regex("[A-Za-z]+:[0-9]{1,15}"
                                                            "(,[A-Za-z]+:[0-9]{1,15})*")),
      "backend URI '" + uri.text +
          "': limits must be NAME:VALUE[,NAME:VALUE...], e.g. "
          "limits=maxStorageBufferBindingSize:134217728");
  auto b = std::make_unique<LocalRunner>();
  rpc::WebRelayOptions ro;
  ro.token = random_token();
  b->relay = std::make_unique<rpc::WebRelay>(ro);
  b->relay->start();
  t.host = "127.0.0.1";
  t.port = b->relay->port();
  t.token = ro.token;
  t.announce = false;
  std::string what;
  if (uri.target == "node") {
    std::string script = node_runner_script();
    TAPML_REQUIRE(std::filesystem::exists(script),
                  o.where + ": " + script +
                      " not found (set TAPML_WEB_DIR to the web/ folder of a TapML source tree)");
    what = "the Node runner";
  } else {
    char tmpl[] = "/tmp/tapml-chromium-XXXXXX";
    TAPML_REQUIRE(::mkdtemp(tmpl), o.where + ": cannot make a temporary browser profile");
    b->profile = tmpl;
    what = "headless Chromium (" + chromium_binary() + "; TAPML_CHROMIUM overrides)";
  }
  std::vector<std::string> argv =
      webgpu_runner_command(uri.target, *b->relay, t.name, limits, b->profile.string());
  b->runner = std::make_unique<DeviceProcess>(argv);
  DeviceProcess& runner = *b->runner;
  auto tail = [&runner] {
    std::string lines = runner.last_lines();
    return lines.empty() ? std::string(" (it printed nothing)") : ", its last output:\n" + lines;
  };
  auto alive = [&] {
    if (auto status = runner.ended())
      throw Error(o.where + ": " + what + " " + *status + " before its device connected" + tail());
  };
  try {
    return std::make_unique<LocalWebGpu>(connect(t, o, alive), std::move(b));
  } catch (const Error& e) {
    std::string msg = e.what();
    if (!runner.ended()) msg += " (" + what + " is still starting" + tail() + ")";
    throw Error(msg);
  }
}

}  // namespace

std::unique_ptr<Backend> make_webgpu_backend(const BackendUri& uri) {
  uri.allow_params({"token", "wait_ms", "timeout_ms", "call_timeout_ms", "hash_min", "limits"});
  bool local = uri.target == "chromium" || uri.target == "node";
  bool remote = uri.text.rfind("webgpu://", 0) == 0;
  TAPML_REQUIRE_USAGE(local || (remote && !uri.target.empty()),
                      "backend URI '" + uri.text +
                          "': expected webgpu://HOST:PORT[/NAME], webgpu:chromium or webgpu:node");
  rpc::ClientOptions o;
  o.where = remote ? "webgpu://" + uri.target : "webgpu:" + uri.target;
  o.uri = uri.text;
  o.kind = "webgpu";
  o.timeout_ms = int(uri.int_param("timeout_ms", 5000, 1, kDay));
  o.call_timeout_ms = int(uri.params.count("call_timeout_ms")
                              ? uri.int_param("call_timeout_ms", 0, o.timeout_ms, kDay)
                              : std::max(120000, o.timeout_ms));
  o.hash_min = uint64_t(uri.int_param("hash_min", 4096, 0, INT64_MAX));
  // A round trip through the relay costs more than a buffer kept: reuse freed ones.
  o.reuse_bytes = size_t(64) << 20;
  o.describe = [](const rpc::HelloOk& h) { return rpc::printable(h.device); };
  Target t;
  t.wait_ms =
      int(uri.int_param("wait_ms", local && uri.target == "chromium" ? 60000 : 30000, 0, kDay));
  if (local) {
    TAPML_REQUIRE_USAGE(!uri.params.count("token"), "backend URI '" + uri.text + "': webgpu:" +
                                                        uri.target + " makes its own token");
    return start_local(uri, std::move(o), t);
  }
  TAPML_REQUIRE_USAGE(!uri.params.count("limits"),
                      "backend URI '" + uri.text +
                          "': limits= applies to webgpu:chromium and webgpu:node; for a tab, add "
                          "&limits=... to the page's URL");
  std::string hostport = uri.target;
  if (auto slash = hostport.find('/'); slash != std::string::npos) {
    t.name = hostport.substr(slash + 1);
    hostport = hostport.substr(0, slash);
    TAPML_REQUIRE_USAGE(!t.name.empty(), "backend URI '" + uri.text + "': empty device name");
  }
  std::tie(t.host, t.port) = rpc::parse_host_port(hostport);
  t.token = uri.param("token", "");
  return connect(t, std::move(o), [] {});
}

}  // namespace tapml

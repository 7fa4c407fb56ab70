#include "support/web_device.h"

#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "backends/webgpu/webgpu_backend.h"
#include "core/error.h"
#include "rpc/websocket.h"

namespace tapml::testing {

namespace fs = std::filesystem;

std::string web_runner_unavailable(const std::string& kind) {
  if (kind == "chromium")
    return fs::exists(chromium_binary()) ? "" : "no Chromium at " + chromium_binary();
  if (std::system("node --version >/dev/null 2>&1") != 0) return "no node in PATH";
  fs::path web = fs::path(node_runner_script()).parent_path();
  for (const char* package : {"webgpu", "ws"})
    if (!fs::exists(web / "node_modules" / package))
      return "npm package " + std::string(package) + " missing in " + web.string() +
             " (scripts/install-deps installs it)";
  return "";
}

WebDevice::WebDevice(const std::string& kind, WebDeviceOptions o) : kind_(kind) {
  relay_ = std::make_unique<rpc::WebRelay>(rpc::WebRelayOptions{});
  relay_->start();
  char tmpl[] = "/tmp/tapml-test-chromium-XXXXXX";
  TAPML_REQUIRE(::mkdtemp(tmpl), "cannot make a browser profile");
  profile_ = tmpl;
  std::vector<std::string> argv = webgpu_runner_command(kind, *relay_, name_, o.limits, profile_);
  if (o.devtools) argv.insert(argv.begin() + 1, "--remote-debugging-port=0");
  process_ = std::make_unique<DeviceProcess>(argv);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.wait_ms);
  for (;;) {
    for (const rpc::WebDeviceStatus& d : relay_->devices())
      if (d.name == name_) return;
    if (auto status = process_->ended())
      throw Error("the " + kind + " runner " + *status + ": " + process_->last_lines());
    if (std::chrono::steady_clock::now() > deadline)
      throw Error("the " + kind + " runner did not connect: " + process_->last_lines());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

WebDevice::~WebDevice() {
  process_.reset();
  relay_.reset();
  std::error_code ec;
  fs::remove_all(profile_, ec);
}

std::string WebDevice::uri(const std::string& query) const {
  return "webgpu://127.0.0.1:" + std::to_string(relay_->port()) + "/" + name_ + query;
}

void WebDevice::kill() { ::kill(-process_->pid(), SIGKILL); }

int WebDevice::devtools_port() const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    std::ifstream f(profile_ + "/DevToolsActivePort");
    int port = 0;
    if (f >> port && port > 0) return port;
    TAPML_REQUIRE(std::chrono::steady_clock::now() < deadline,
                  "Chromium wrote no DevToolsActivePort in " + profile_);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

namespace {

// GET `path` from 127.0.0.1:port; the body.
std::string http_get(int port, const std::string& path) {
  rpc::Socket s = rpc::connect_tcp("127.0.0.1", uint16_t(port), 5000);
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nConnection: close\r\n\r\n";
  s.send_all(req.data(), req.size(), 5000);
  // The answer's head, then its body by Content-Length (DevTools keeps the connection open).
  std::string all;
  char buf[4096];
  size_t head_end = std::string::npos, length = std::string::npos;
  for (;;) {
    if (head_end == std::string::npos && (head_end = all.find("\r\n\r\n")) != std::string::npos) {
      std::string head = all.substr(0, head_end);
      for (char& c : head) c = char(std::tolower(static_cast<unsigned char>(c)));
      auto at = head.find("content-length:");
      if (at != std::string::npos) length = std::stoul(head.substr(at + 15));
    }
    if (head_end != std::string::npos && length != std::string::npos &&
        all.size() >= head_end + 4 + length)
      break;
    pollfd p{s.fd(), POLLIN, 0};
    TAPML_REQUIRE(::poll(&p, 1, 5000) > 0, "DevTools: no answer to GET " + path);
    ssize_t n = ::read(s.fd(), buf, sizeof buf);
    if (n <= 0) break;
    all.append(buf, size_t(n));
  }
  TAPML_REQUIRE(head_end != std::string::npos, "DevTools: malformed answer to GET " + path);
  return all.substr(head_end + 4, length);
}

// One DevTools command on the first page target; its "result".
nlohmann::json devtools_call(int port, const std::string& method, const nlohmann::json& params) {
  std::string target;
  for (const auto& t : nlohmann::json::parse(http_get(port, "/json/list")))
    if (t.value("type", "") == "page") {
      std::string ws = t.value("webSocketDebuggerUrl", "");
      target = ws.substr(ws.find('/', ws.find("//") + 2));
      break;
    }
  TAPML_REQUIRE(!target.empty(), "DevTools: no page target");
  rpc::Socket s = rpc::connect_tcp("127.0.0.1", uint16_t(port), 5000);
  rpc::connect_websocket(s, "127.0.0.1:" + std::to_string(port), target, 5000);
  rpc::WebSocket ws(std::move(s), rpc::WebSocket::Role::Client, size_t(64) << 20);
  ws.send_text(nlohmann::json{{"id", 1}, {"method", method}, {"params", params}}.dump(), 5000);
  for (;;) {
    rpc::WebSocket::Message m = ws.receive(30000, 30000);
    TAPML_REQUIRE(m.kind != rpc::WebSocket::Kind::Closed, "DevTools: closed");
    auto j = nlohmann::json::parse(m.text());
    if (j.value("id", 0) != 1) continue;
    TAPML_REQUIRE(!j.contains("error"), "DevTools: " + j["error"].dump());
    return j["result"];
  }
}

std::string base64_decode(const std::string& in) {
  static const std::string abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    auto v = abc.find(c);
    if (v == std::string::npos) continue;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(char((acc >> bits) & 0xFF));
    }
  }
  return out;
}

}  // namespace

std::string devtools_evaluate(int port, const std::string& expression) {
  nlohmann::json r = devtools_call(port, "Runtime.evaluate",
                                   {{"expression", expression}, {"returnByValue", true}});
  const auto& v = r["result"]["value"];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string devtools_screenshot_png(int port) {
  return base64_decode(devtools_call(port, "Page.captureScreenshot", {{"format", "png"}})["data"]
                           .get<std::string>());
}

}  // namespace tapml::testing

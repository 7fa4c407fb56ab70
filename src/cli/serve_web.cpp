#include <csignal>
#include <cstdio>
#include <ctime>

#include "cli/commands.h"
#include "core/error.h"
#include "rpc/web_relay.h"

namespace tapml::cli {

namespace {
struct ServeWebArgs {
  std::string listen = "127.0.0.1:8000", token, name = "default", web_dir;
};

rpc::WebRelay* g_relay = nullptr;  // for the signal handler only
extern "C" void on_web_signal(int) {
  if (g_relay) g_relay->interrupt();
}

void log_line(const std::string& line) {
  std::time_t now = std::time(nullptr);
  char stamp[16];
  std::strftime(stamp, sizeof stamp, "%H:%M:%S", std::localtime(&now));
  std::printf("%s %s\n", stamp, line.c_str());
  std::fflush(stdout);
}

void serve_web(const ServeWebArgs& a) {
  rpc::WebRelayOptions o;
  check_usage([&] {
    auto [host, port] = rpc::parse_host_port(a.listen);
    o.host = host;
    o.port = port;
  });
  o.token = a.token;
  o.web_dir = a.web_dir;
  o.log = log_line;
  rpc::WebRelay relay(o);
  if (!rpc::is_loopback(o.host))
    std::fprintf(stderr,
                 "tapml serve-web: warning: the token and all data cross the network in clear "
                 "text (no TLS); on untrusted networks listen on 127.0.0.1 and connect through "
                 "`ssh -L %u:127.0.0.1:%u HOST` instead\n",
                 unsigned(relay.port()), unsigned(relay.port()));
  std::string host = o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
  std::string where = host + ":" + std::to_string(relay.port());
  std::string uri = "webgpu://" + where + (a.name == "default" ? "" : "/" + a.name) +
                    (a.token.empty() ? "" : "?token=" + a.token);
  // The first line names the bound port, so scripts and tests can use --listen HOST:0.
  std::printf("listening on %s\n", where.c_str());
  std::printf("open in a browser with WebGPU: %s\n", relay.page_url(a.name).c_str());
  std::printf("then use the backend:          --backend '%s'\n", uri.c_str());
  std::fflush(stdout);
  g_relay = &relay;
  std::signal(SIGINT, on_web_signal);
  std::signal(SIGTERM, on_web_signal);
  std::signal(SIGPIPE, SIG_IGN);
  relay.serve();
  g_relay = nullptr;
  log_line("stopped");
}
}  // namespace

void add_serve_web(CLI::App& app) {
  auto a = std::make_shared<ServeWebArgs>();
  CLI::App* c =
      app.add_subcommand("serve-web",
                         "Let a browser tab (or Node) with WebGPU serve as a device (clients use "
                         "webgpu://HOST:PORT)");
  c->footer(
      "A browser cannot accept connections, so the tab connects out to this relay, which pairs\n"
      "it with one tapml command at a time:\n"
      "  $ tapml serve-web                  (prints the URL to open and the backend URI)\n"
      "  open http://127.0.0.1:8000/?name=default in Chrome/Edge (WebGPU on); leave it open\n"
      "  $ tapml test --corpus c.db --backend webgpu://127.0.0.1:8000\n"
      "The tab reconnects by itself, so it serves every later command. Several tabs can serve\n"
      "at once under different names (?name=N in the page URL, webgpu://HOST:PORT/N). Without\n"
      "a tab at hand, --backend webgpu:chromium or webgpu:node starts one for a single command.\n"
      "\n"
      "The token and all data cross the network in clear text: TapML has no TLS. Keep the\n"
      "default 127.0.0.1 and reach another machine through an SSH tunnel\n"
      "(ssh -L 8000:127.0.0.1:8000 HOST); any other address needs --token and prints a\n"
      "warning. Pages of other sites cannot use the relay (their Origin is refused). See\n"
      "docs/protocol.md, \"WebSocket transport and the browser relay\".");
  c->add_option("--listen", a->listen,
                "HOST:PORT to listen on (default 127.0.0.1:8000; port 0 picks a free one; any "
                "non-loopback host needs --token)");
  c->add_option("--token", a->token,
                "devices and clients must present this token (it goes into the printed URL and "
                "URI)");
  c->add_option("--name", a->name,
                "the device name the printed URL and URI use (default \"default\")");
  c->add_option("--web-dir", a->web_dir,
                "serve the device page from this folder instead of the files built in (for "
                "working on web/)");
  c->callback([a] { serve_web(*a); });
}

}  // namespace tapml::cli

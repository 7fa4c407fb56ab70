#include <csignal>
#include <cstdio>

#include "backends/builtin.h"
#include "cli/commands.h"
#include "core/error.h"
#include "rpc/server.h"

namespace tapml::cli {

namespace {
struct ServeArgs {
  std::string backend = "cpu", listen = "127.0.0.1:7411", token;
  uint64_t max_memory = uint64_t(4) << 30, cache_memory = uint64_t(1) << 30;
  uint64_t max_total_memory = rpc::default_total_memory();
  int max_connections = 32;
  uint64_t idle_timeout_s = 600;
};

// Accepts a whole number from `min` to `max` (and no sign, no suffix), so a negative value is
// not wrapped around into a huge unsigned one.
CLI::Validator whole_number(uint64_t min, uint64_t max = UINT64_MAX) {
  const std::string range = max == UINT64_MAX
                                ? "at least " + std::to_string(min)
                                : "from " + std::to_string(min) + " to " + std::to_string(max);
  return CLI::Validator(
      [min, max, range](std::string& v) -> std::string {
        bool digits = !v.empty() && v.size() <= 19 && v.find_first_not_of("0123456789") == v.npos;
        if (digits && std::stoull(v) >= min && std::stoull(v) <= max) return "";
        return "'" + v + "' is not a whole number " + range;
      },
      max == UINT64_MAX ? "N>=" + std::to_string(min)
                        : std::to_string(min) + ".." + std::to_string(max));
}

rpc::Server* g_server = nullptr;  // for the signal handler only
extern "C" void on_signal(int) {
  if (g_server) g_server->interrupt();
}

void serve(const ServeArgs& a) {
  rpc::ServerOptions o;
  auto [host, port] = rpc::parse_host_port(a.listen);
  o.host = host;
  o.port = port;
  o.token = a.token;
  o.max_memory = a.max_memory;
  o.max_total_memory = a.max_total_memory;
  o.cache_bytes = a.cache_memory;
  o.max_connections = a.max_connections;
  o.idle_timeout_ms = int(a.idle_timeout_s * 1000);
  TAPML_REQUIRE(a.backend.rfind("tcp:", 0) != 0, "serve: --backend must be a local backend");
  rpc::Server server(open_backend(a.backend), o);
  if (!rpc::is_loopback(host))
    std::fprintf(stderr,
                 "tapml serve: warning: the token and all data cross the network in clear text "
                 "(no TLS); on untrusted networks listen on 127.0.0.1 and connect through "
                 "`ssh -L %u:127.0.0.1:%u HOST` instead\n",
                 unsigned(server.port()), unsigned(server.port()));
  // The first line names the bound port, so scripts and tests can use --listen HOST:0.
  std::printf("listening on %s:%u\n", host.c_str(), unsigned(server.port()));
  std::fflush(stdout);
  g_server = &server;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  server.serve();
  g_server = nullptr;
}
}  // namespace

void add_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* c = app.add_subcommand(
      "serve", "Offer a local backend to other machines (clients use tcp://HOST:PORT)");
  c->footer(
      "The token and all data cross the network in clear text: TapML has no TLS. On a network\n"
      "you do not trust, keep the default 127.0.0.1 and reach the server through an SSH tunnel:\n"
      "  gpu-host$ tapml serve --backend vulkan --listen 127.0.0.1:7000\n"
      "  laptop$   ssh -L 7000:127.0.0.1:7000 gpu-host\n"
      "  laptop$   tapml test --corpus c.db --backend tcp://127.0.0.1:7000\n"
      "Serving any other address prints a warning; see docs/protocol.md.");
  c->add_option("--backend", a->backend, "the local backend to wrap (default cpu)");
  c->add_option("--listen", a->listen,
                "HOST:PORT to listen on (default 127.0.0.1:7411; port 0 picks a free one; any "
                "non-loopback host needs --token)");
  c->add_option("--token", a->token, "clients must present this token (?token=T)");
  // A zero or negative limit would start a server nobody can use: refuse it before listening.
  c->add_option("--max-memory", a->max_memory, "buffer bytes each connection may hold")
      ->check(whole_number(1));
  c->add_option("--max-total-memory", a->max_total_memory,
                "buffer and cache bytes of all connections together (default: half the "
                "physical memory, " +
                    std::to_string(a->max_total_memory) + ")")
      ->check(whole_number(1));
  c->add_option("--cache-memory", a->cache_memory,
                "bytes kept for the hash probe, so weights are not sent twice (0: off; counted "
                "in --max-total-memory)")
      ->check(whole_number(0));
  c->add_option("--max-connections", a->max_connections,
                "clients served at once (default 32); when all are taken, a new client takes "
                "the place of the one idle longest")
      ->check(CLI::Range(1, 65536));
  // Long enough for a client to think between requests (a host-side pass of a big model),
  // short enough that an abandoned client's memory comes back the same hour.
  c->add_option("--idle-timeout", a->idle_timeout_s,
                "close a client after SECONDS without a request (default 600; 0: never)")
      ->check(whole_number(0, 2000000));
  c->callback([a] { serve(*a); });
}

}  // namespace tapml::cli

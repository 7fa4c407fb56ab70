// The device protocol over loopback: transfer throughput, per-call latency, and what the
// hash probe saves when the same model runs twice against one server. The server runs in
// this process (a thread) wrapping `--backend`; the client is the tcp:// backend.
//   rpc_bench [--model PATH] [--backend cpu] [--mib 256] [--calls 2000] [--steps 32]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "backends/builtin.h"
#include "backends/remote/tcp_backend.h"
#include "model/model_file.h"
#include "rpc/server.h"
#include "runtime/generate.h"
#include "runtime/placement.h"
#include "runtime/session.h"

using namespace tapml;
using clock_type = std::chrono::steady_clock;

namespace {
double since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"rpc_bench: loopback throughput, call latency and hash-probe savings"};
  std::string model_path = "../shared/models/stories260K/stories260K.gguf", backend = "cpu";
  int mib = 256, calls = 2000, steps = 32;
  app.add_option("--model", model_path, "model for the two-run hash-probe measurement");
  app.add_option("--backend", backend, "the backend the server wraps");
  app.add_option("--mib", mib, "MiB moved each way for the throughput figures");
  app.add_option("--calls", calls, "round trips timed for the latency figures");
  app.add_option("--steps", steps, "positions per model run");
  CLI11_PARSE(app, argc, argv);

  rpc::ServerOptions o;
  o.max_memory = uint64_t(mib + 64) << 20;
  rpc::Server server(open_backend(backend), o);
  std::thread serving([&] { server.serve(); });
  std::string uri = "tcp://127.0.0.1:" + std::to_string(server.port());
  std::printf("server: %s wrapping %s\n", uri.c_str(), backend.c_str());

  {
    // Throughput: the hash probe off, so every byte crosses.
    auto b = open_backend(uri + "?hash_min=0");
    size_t bytes = size_t(mib) << 20;
    std::vector<uint8_t> data(bytes);
    for (size_t i = 0; i < bytes; ++i) data[i] = uint8_t(i * 2654435761u >> 13);
    BufferId id = b->alloc(bytes);
    auto t0 = clock_type::now();
    b->write(id, 0, data.data(), bytes);
    double w = since(t0);
    t0 = clock_type::now();
    b->read(id, 0, data.data(), bytes);
    double r = since(t0);
    std::printf("transfer: write %.0f MB/s, read %.0f MB/s (%d MiB each way, 16 MiB frames)\n",
                bytes / w / 1e6, bytes / r / 1e6, mib);
    b->free(id);

    // Latency: SYNC is an empty round trip; RUN of a one-row add is the smallest real call.
    std::vector<double> sync_us, run_us;
    for (int i = 0; i < calls; ++i) {
      auto t = clock_type::now();
      b->sync();
      sync_us.push_back(since(t) * 1e6);
    }
    BufferId x = b->alloc(3 * 64 * 4);
    std::vector<float> zeros(3 * 64, 0.f);
    b->write(x, 0, zeros.data(), zeros.size() * 4);
    OpCall add{Op::Add,
               {},
               {{x, 0, DType::F32, Shape{1, 64}}, {x, 256, DType::F32, Shape{1, 64}}},
               {{x, 512, DType::F32, Shape{1, 64}}},
               "bench"};
    for (int i = 0; i < calls; ++i) {
      auto t = clock_type::now();
      b->run(add);
      run_us.push_back(since(t) * 1e6);
    }
    std::printf(
        "latency: empty round trip (SYNC) median %.1f us; add [1, 64] (RUN) median %.1f us "
        "(%d calls each)\n",
        median(sync_us), median(run_us), calls);
  }

  {
    // The same model twice, each run a fresh connection: the second finds its weights held.
    ModelFile model = load_model(model_path);
    uint64_t weight_bytes = 0;
    for (auto& [name, t] : model.weights) weight_bytes += t.nbytes();
    std::vector<int> prompt = {1, 403, 407, 261, 378};
    for (int run = 1; run <= 2; ++run) {
      uint64_t hits0 = server.stats().cache_hit_bytes;
      auto t0 = clock_type::now();
      Session session(model, Placement(uri), steps);
      GenerateOptions g;
      g.steps = steps;
      generate(session, prompt, g);
      double s = since(t0);
      uint64_t skipped = server.stats().cache_hit_bytes - hits0;
      std::printf(
          "model run %d: %.3f s for %d positions; weights %.2f MiB, %.2f MiB not sent "
          "(hash probe hits)\n",
          run, s, steps, weight_bytes / 1048576.0, skipped / 1048576.0);
    }
  }
  server.stop();
  serving.join();
  return 0;
}

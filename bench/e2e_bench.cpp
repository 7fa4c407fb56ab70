// e2e_bench: end-to-end prefill and decode speed of TapML backends on one model file.
//
// For each backend URI it opens a session, runs one unmeasured warm-up generation (weights
// reach the backend and caches fill on first use, which is load time, not speed), then R
// measured generations, each:
//   prefill: the P prompt tokens as one batch (logits of the last row only), timed;
//   decode:  G single-token steps, each feeding the previous step's greedy choice, timed.
// It prints one JSON line per backend with the per-run speeds and their medians. The prompt
// is synthetic (BOS, then ids (i * 7919) mod (V - 3) + 3) so that no tokenizer is involved
// and llama_bench.mjs can feed llama.cpp exactly the same ids.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/model_file.h"
#include "runtime/device_pool.h"
#include "runtime/generate.h"
#include "runtime/placement.h"
#include "runtime/session.h"

namespace {

using namespace tapml;
using Clock = std::chrono::steady_clock;

// Kept identical to promptTokens() in node/llama_bench.mjs.
std::vector<int> prompt_tokens(int n, int vocab) {
  std::vector<int> ids(static_cast<size_t>(n));
  ids[0] = 1;  // BOS in both the stories260K and the generated vocabularies
  for (int i = 1; i < n; ++i) ids[size_t(i)] = int((int64_t(i) * 7919) % (vocab - 3) + 3);
  return ids;
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  size_t n = xs.size();
  return n % 2 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_path, label, kv_cache = "f32";
  std::vector<std::string> backends;
  int prompt_len = 128, gen_tokens = 32, reps = 5, warmup = 1;
  CLI::App app{"End-to-end prefill/decode tokens per second of TapML backends"};
  app.add_option("--model", model_path, "GGUF or llama2.c model")->required();
  app.add_option("--backend", backends, "backend URI (repeatable), e.g. 'cpu?threads=2', ref")
      ->required();
  app.add_option("--prompt-tokens,-p", prompt_len, "prompt length P (one prefill batch)")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  app.add_option("--gen-tokens,-g", gen_tokens, "decode steps G")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  app.add_option("--reps,-r", reps, "measured repetitions R")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--warmup", warmup, "unmeasured repetitions first")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--label", label, "model label for the output (default: the path)");
  app.add_option("--kv-cache", kv_cache, "KV cache dtype: f32 or f16")
      ->check(CLI::IsMember({"f32", "f16"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (label.empty()) label = model_path;

  try {
    auto t_load = Clock::now();
    ModelFile model = load_model(model_path);
    double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
    const int V = model.config.vocab_size;
    const std::vector<int> prompt = prompt_tokens(prompt_len, V);
    // Prefill of P tokens, then G single-token decode steps, greedy, never stopping early.
    GenerateOptions run;
    run.steps = prompt_len + gen_tokens;
    // The session's cache holds exactly the positions a run uses; a file that declares a
    // shorter context is run past it, as `tapml run` allows.
    const int context = run.steps;

    for (const std::string& uri : backends) {
      DevicePool pool;
      Session session(model, Placement(uri), pool, context, dtype_from_name(kv_cache));
      for (int i = 0; i < warmup; ++i) generate(session, prompt, run);
      std::vector<double> prefill, decode;
      GenerateResult last;
      for (int i = 0; i < reps; ++i) {
        last = generate(session, prompt, run);
        prefill.push_back(prompt_len / last.prefill_seconds);
        decode.push_back(last.decode_tokens / last.decode_seconds);
      }
      nlohmann::json j;
      j["engine"] = "tapml";
      j["backend"] = uri;
      // What each device the placement opened is (an OpenCL loader can hand "opencl" a CPU
      // driver): uri -> description.
      for (const std::string& u : pool.uris()) j["devices"][u] = pool.open(u).info().device;
      j["model"] = label;
      j["prompt_tokens"] = prompt_len;
      j["gen_tokens"] = gen_tokens;
      j["reps"] = reps;
      j["kv_cache"] = kv_cache;
      j["prefill_tok_s"] = median(prefill);
      j["decode_tok_s"] = median(decode);
      j["prefill_runs"] = prefill;
      j["decode_runs"] = decode;
      j["load_s"] = load_s;
      // The greedy continuation, so a reader can see both engines computed the same thing.
      auto generated = last.token_ids.begin() + prompt_len;
      j["greedy"] = std::vector<int>(
          generated, generated + std::min<ptrdiff_t>(16, last.token_ids.end() - generated));
      std::puts(j.dump().c_str());
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "e2e_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}

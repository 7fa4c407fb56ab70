#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.h"
#include "cli/json_output.h"
#include "cli/prompts.h"
#include "core/atomic_file.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/model_file.h"
#include "model/sites.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "tokenizer/load.h"

namespace tapml::cli {

namespace {
struct RunArgs {
  std::string model, backend = "cpu", logits_out, kv_cache = "f32";
  PromptArgs prompt;
  std::vector<std::string> place;
  int steps = 256;
  float temperature = 0, top_p = 1;
  uint64_t seed = 0;
  bool json = false;
};

void run(const RunArgs& a, DevicePool& devices) {
  check_outputs({{a.logits_out, "--logits-out"}});
  const DType kv = dtype_from_name(a.kv_cache);  // f32 or f16: --kv-cache checks it
  Placement placement(a.backend);
  check_usage([&] {
    for (const std::string& rule : a.place) placement.add_rule(rule);
  });
  // Every backend the placement names, opened (and so checked) before the model is read.
  for (const std::string& uri : placement.uris()) devices.open(uri);
  ModelFile model = load_model(a.model);
  Prompts prompts = resolve_prompts(a.prompt, model);
  const std::optional<Tokenizer>& tok = prompts.tokenizer;
  int context = model.config.max_seq_len;
  check_usage([&] {
    placement.check_rules(model_sites(model));
    if (a.steps > context) context = a.steps;
    check_cache_memory(model, context, kv);
  });
  if (context > model.config.max_seq_len)
    std::fprintf(stderr, "note: %s declares a context of %d positions; running %d\n",
                 a.model.c_str(), model.config.max_seq_len, context);
  Session session(model, placement, devices, context, kv);

  GenerateOptions o;
  o.steps = a.steps;
  o.temperature = a.temperature;
  o.top_p = a.top_p;
  o.seed = a.seed;
  o.keep_logits = !a.logits_out.empty();
  o.stop_tokens = prompts.stop_tokens;
  const std::vector<int>& prompt = prompts.ids[0];
  std::optional<TextStream> stream;
  if (!a.json) {
    // Text through the tokenizer; without one, the ids.
    auto ids = [](const std::vector<int>& v) {
      std::string s;
      for (int t : v) s += (s.empty() ? "" : " ") + std::to_string(t);
      return s;
    };
    if (tok) {
      // Characters split across tokens are printed once complete.
      stream.emplace(*tok);
      for (int t : prompt) std::fputs(stream->push(t).c_str(), stdout);
    } else {
      std::fputs(ids(prompt).c_str(), stdout);
    }
    std::fflush(stdout);
    o.on_token = [&](int t) {
      std::fputs(stream ? stream->push(t).c_str() : (" " + std::to_string(t)).c_str(), stdout);
      std::fflush(stdout);
    };
  }
  GenerateResult r = generate(session, prompt, o);
  if (!a.logits_out.empty()) {
    std::span<const std::byte> bytes = std::as_bytes(std::span(r.logits));
    write_output(a.logits_out, std::span(&bytes, 1));
  }

  double prefill_tps = r.prefill_seconds > 0 ? r.prompt_tokens / r.prefill_seconds : 0;
  double decode_tps = r.decode_seconds > 0 ? r.decode_tokens / r.decode_seconds : 0;
  if (a.json) {
    nlohmann::json j;
    j["model"] = a.model;
    j["backend"] = a.backend;
    j["place"] = a.place;
    j["steps"] = a.steps;
    j["kv_cache"] = a.kv_cache;
    j["prompt"] = prompts.labels[0];
    j["token_ids"] = r.token_ids;
    if (tok) j["text"] = tok->decode(r.token_ids);
    j["positions"] = r.positions;
    j["prompt_tokens"] = r.prompt_tokens;
    j["prefill_tokens_per_s"] = prefill_tps;
    j["decode_tokens_per_s"] = decode_tps;
    print_json(j);
  } else {
    if (stream) std::fputs(stream->finish().c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    auto tokens = [](int n) { return std::to_string(n) + (n == 1 ? " token" : " tokens"); };
    std::fprintf(stderr, "[%d positions; prefill %s at %.1f tok/s, decode %s at %.1f tok/s]\n",
                 r.positions, tokens(r.prompt_tokens).c_str(), prefill_tps,
                 tokens(r.decode_tokens).c_str(), decode_tps);
  }
}
}  // namespace

void add_run(CLI::App& app, DevicePool& devices) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* c = app.add_subcommand("run", "Generate text with a model");
  c->footer(
      "Examples:\n"
      "  tapml run --model stories260K.bin --tokenizer tok512.bin --prompt 'Once upon a time'\n"
      "  tapml run --model stories260K.gguf --backend ref --place 'matmul=cpu' --json\n"
      "  tapml run --model m.gguf --place 'blk\\.1\\.=cpu' --steps 64 --logits-out l.f32\n"
      "  tapml run --model qwen2-folder/ --prompt-ids 144,216,189 --steps 48 --temperature 0\n"
      "Placement rules are REGEX=BACKEND, searched in each site name (token_embd, blk.N.attn_q,\n"
      "blk.N.rope_q, blk.N.kv_store, blk.N.attn, blk.N.ffn_act, output, ...) and op name\n"
      "(embedding, rmsnorm, matmul, rope, kv_store, attention, swiglu, add); first match wins.");
  c->add_option("--model", a->model,
                "model: a GGUF file, a llama2.c checkpoint, or a Hugging Face folder")
      ->required();
  add_prompt_options(c, a->prompt, true);
  c->add_option("--steps", a->steps, "positions to run, prompt included (as llama2.c -n)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  c->add_option("--temperature", a->temperature, "0 = greedy")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  c->add_option("--top-p", a->top_p, "nucleus sampling cut, (0, 1]")
      ->check(CLI::Range(1e-6, 1.0))
      ->capture_default_str();
  c->add_option("--seed", a->seed, "random seed for sampling")->check(kSeed)->capture_default_str();
  c->add_option("--backend", a->backend, backend_help("default backend URI"))
      ->capture_default_str();
  c->add_option("--place", a->place, "placement rule REGEX=BACKEND (repeatable)");
  add_kv_cache_option(c, a->kv_cache,
                      "with another backend, place its ops on cpu: --place "
                      "'kv_store|attention=cpu'");
  c->add_flag("--json", a->json, "print one JSON object (token_ids, text, speeds)");
  c->add_option("--logits-out", a->logits_out,
                "write every position's f32 logits, row-major [positions, vocab]");
  c->callback([a, &devices] { run(*a, devices); });
}

}  // namespace tapml::cli

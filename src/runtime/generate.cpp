#include "runtime/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "runtime/sampler.h"

namespace tapml {

std::vector<int> stop_tokens(const ModelFile& model, const Vocab& vocab) {
  // Every end-of-generation token the vocabulary declares (EOS, end of turn, ...).
  std::vector<int> stops = vocab.eog;
  if (vocab.eos >= 0 && std::find(stops.begin(), stops.end(), vocab.eos) == stops.end())
    stops.push_back(vocab.eos);
  if (model.format == "llama2c") stops.push_back(vocab.bos);
  return stops;
}

GenerateResult generate(Session& session, const std::vector<int>& prompt,
                        const GenerateOptions& o) {
  const int ctx = session.context();
  TAPML_REQUIRE(!prompt.empty(), "the prompt holds no tokens (not even BOS)");
  TAPML_REQUIRE(o.steps >= int(prompt.size()),
                "--steps " + std::to_string(o.steps) + " is shorter than the prompt's " +
                    std::to_string(prompt.size()) +
                    " tokens (steps count positions, prompt included)");
  TAPML_REQUIRE(o.steps <= ctx, "--steps " + std::to_string(o.steps) +
                                    " exceeds the session's context length " + std::to_string(ctx));
  Sampler sampler(o.temperature, o.top_p, o.seed);
  using clock = std::chrono::steady_clock;
  const int V = session.config().vocab_size;

  GenerateResult r;
  r.token_ids = prompt;
  r.prompt_tokens = int(prompt.size());
  session.reset();

  std::vector<int32_t> batch(prompt.begin(), prompt.end());
  auto t0 = clock::now();
  std::vector<float> logits = session.forward(batch, o.keep_logits);
  r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  r.positions = int(prompt.size());
  if (o.keep_logits) r.logits = logits;

  auto t1 = clock::now();
  while (true) {
    int next = sampler.sample(std::span<const float>(logits).last(size_t(V)));
    r.token_ids.push_back(next);
    if (o.on_token) o.on_token(next);
    bool stop = std::find(o.stop_tokens.begin(), o.stop_tokens.end(), next) != o.stop_tokens.end();
    if (stop || r.positions >= o.steps) break;
    int32_t tok = next;
    logits = session.forward(std::span<const int32_t>(&tok, 1), false);
    r.positions++;
    r.decode_tokens++;
    if (o.keep_logits) r.logits.insert(r.logits.end(), logits.begin(), logits.end());
  }
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return r;
}

}  // namespace tapml

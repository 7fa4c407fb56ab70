// The generate loop. Positions count as llama2.c's -n does: `steps` positions are run,
// prompt included, so a full run yields steps + 1 ids (the prompt's first id being BOS).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/session.h"
#include "tokenizer/vocab.h"

namespace tapml {

struct GenerateOptions {
  int steps = 256;
  float temperature = 0;
  float top_p = 1;
  uint64_t seed = 0;
  std::vector<int> stop_tokens;  // generation ends after emitting one of these
  bool keep_logits = false;      // keep every position's logits
  // Called with each new token as it is chosen.
  std::function<void(int token)> on_token;
};

struct GenerateResult {
  std::vector<int> token_ids;  // prompt ids, then generated ids
  std::vector<float> logits;   // [positions, vocab] when keep_logits
  int positions = 0;           // positions run
  int prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  int decode_tokens = 0;
};

// The tokens that end a generation of this model with this vocabulary: its end of sequence,
// and for llama2.c checkpoints its BOS too (that format separates stories with BOS).
std::vector<int> stop_tokens(const ModelFile& model, const Vocab& vocab);

// Runs the prompt as one prefill batch, then one token per decode step.
GenerateResult generate(Session& session, const std::vector<int>& prompt,
                        const GenerateOptions& options);

}  // namespace tapml

#include "runtime/session.h"

#include "core/error.h"

namespace tapml {

Session::Session(const ModelFile& model, Placement placement, int context)
    : model_(model),
      dispatcher_(model.weights, std::move(placement)),
      config_(model.config),
      context_(context ? context : model.config.max_seq_len) {
  TAPML_REQUIRE(context_ > 0 && context_ <= (1 << 20),
                "context length " + std::to_string(context_) + " is out of range");
  config_.max_seq_len = context_;
  const LlamaConfig& c = config_;
  Shape cache_shape{c.max_seq_len, int64_t(c.n_kv_heads) * c.head_dim};
  for (int l = 0; l < c.n_layers; ++l) {
    cache_.k.push_back(
        dispatcher_.persistent("blk." + std::to_string(l) + ".k_cache", DType::F32, cache_shape));
    cache_.v.push_back(
        dispatcher_.persistent("blk." + std::to_string(l) + ".v_cache", DType::F32, cache_shape));
  }
}

std::vector<float> Session::forward(std::span<const int32_t> tokens, bool all_logits) {
  for (int32_t t : tokens)
    TAPML_REQUIRE(t >= 0 && t < model_.config.vocab_size,
                  "token id " + std::to_string(t) + " is outside the vocabulary of " +
                      std::to_string(model_.config.vocab_size));
  // The phase names which part of a generation a call belongs to: the prompt batch or the
  // K-th single-token step after it.
  if (pos_ == 0) decode_steps_ = 0;
  const bool prefill = pos_ == 0 || tokens.size() > 1;
  dispatcher_.set_phase(prefill ? "prefill" : "decode_" + std::to_string(++decode_steps_));
  std::vector<float> logits;
  try {
    Val out = llama_forward(config_, dispatcher_, cache_, tokens, pos_, all_logits);
    logits = dispatcher_.read(out).to_f32();
  } catch (...) {
    dispatcher_.end_step();
    throw;
  }
  dispatcher_.end_step();
  pos_ += int(tokens.size());
  return logits;
}

}  // namespace tapml

// A model loaded for inference: the dispatcher, the KV cache it owns, and the position.
#pragma once
#include <memory>
#include <span>
#include <vector>

#include "model/llama.h"
#include "model/model_file.h"
#include "runtime/dispatcher.h"
#include "runtime/placement.h"

namespace tapml {

class Session {
 public:
  // `model` must outlive the session. `context` sizes the KV cache in positions; 0 means
  // the context length the model file declares. A larger one is allowed (files often
  // declare less than the model can run, e.g. converted checkpoints).
  Session(const ModelFile& model, Placement placement, int context = 0);

  // Feeds `tokens` at the current position as one batch and advances. Returns the logits,
  // row-major: every row's when all_logits, else the last row's only.
  std::vector<float> forward(std::span<const int32_t> tokens, bool all_logits);
  int position() const { return pos_; }
  int context() const { return context_; }
  // Forgets the cached positions (the cache contents are overwritten as it fills again).
  void reset() { pos_ = 0; }

  const LlamaConfig& config() const { return config_; }
  const ModelFile& model() const { return model_; }
  Dispatcher& dispatcher() { return dispatcher_; }

 private:
  const ModelFile& model_;
  Dispatcher dispatcher_;
  LlamaCache cache_;
  LlamaConfig config_;  // the model's, with max_seq_len = context
  int context_ = 0;
  int pos_ = 0;
  int decode_steps_ = 0;
};

}  // namespace tapml

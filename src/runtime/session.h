// A model loaded for inference: its family's forward pass, the dispatcher, the state the
// family keeps between steps (the KV cache), and the position.
#pragma once
#include <memory>
#include <span>
#include <vector>

#include "model/model_file.h"
#include "runtime/device_pool.h"
#include "runtime/dispatcher.h"
#include "runtime/placement.h"

namespace tapml {

// The bytes of the state a session of `model` keeps for `context` positions (its cache),
// keys and values held as `kv`.
uint64_t cache_bytes(const ModelFile& model, int context, DType kv = DType::F32);
// UsageError when that exceeds the memory budget (core/memory.h), naming both.
void check_cache_memory(const ModelFile& model, int context, DType kv = DType::F32);

class Session {
 public:
  // `model` and `pool` must outlive the session. `context` sizes the KV cache in positions;
  // 0 means the context length the model file declares. A larger one is allowed (files
  // often declare less than the model can run, e.g. converted checkpoints). `kv_cache`: the
  // dtype keys and values are kept in, f32 or f16 (half the memory and the bytes attention
  // reads; every stored key and value rounded to f16).
  Session(const ModelFile& model, Placement placement, DevicePool& pool, int context = 0,
          DType kv_cache = DType::F32);
  // The same with devices of its own (opened for this session alone).
  Session(const ModelFile& model, Placement placement, int context = 0,
          DType kv_cache = DType::F32);

  // Feeds `tokens` at the current position as one batch and advances. Returns the logits,
  // row-major: every row's when all_logits, else the last row's only.
  std::vector<float> forward(std::span<const int32_t> tokens, bool all_logits);
  int position() const { return pos_; }
  int context() const { return context_; }
  // Forgets the cached positions (the cache contents are overwritten as it fills again).
  void reset() { pos_ = 0; }

  const ModelConfig& config() const { return model_.config; }
  const ModelFile& model() const { return model_; }
  Dispatcher& dispatcher() { return dispatcher_; }

 private:
  Session(std::unique_ptr<DevicePool> own, DevicePool* pool, const ModelFile& model,
          Placement placement, int context, DType kv_cache);

  std::unique_ptr<DevicePool> own_pool_;  // when not given one; declared before its user
  const ModelFile& model_;
  const Architecture& arch_;
  Dispatcher dispatcher_;
  std::vector<Val> cache_;
  int context_ = 0;
  int pos_ = 0;
  int decode_steps_ = 0;
};

}  // namespace tapml

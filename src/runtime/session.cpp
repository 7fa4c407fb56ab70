#include "runtime/session.h"

#include "core/error.h"
#include "core/memory.h"

namespace tapml {

uint64_t cache_bytes(const ModelFile& model, int context, DType kv) {
  uint64_t total = 0;
  for (const CacheSpec& c : architecture(model.arch).cache(model.config, context, kv))
    total += uint64_t(tensor_bytes(c.dtype, c.shape));
  return total;
}

void check_cache_memory(const ModelFile& model, int context, DType kv) {
  const uint64_t need = cache_bytes(model, context, kv), budget = memory_budget_bytes();
  TAPML_REQUIRE_USAGE(need <= budget,
                      "a context of " + std::to_string(context) + " positions needs " +
                          bytes_text(need) + " of cache for this model, over the memory budget " +
                          "of " + bytes_text(budget) + " (" + memory_budget_source() + ")");
}

Session::Session(const ModelFile& model, Placement placement, int context, DType kv_cache)
    : Session(std::make_unique<DevicePool>(), nullptr, model, std::move(placement), context,
              kv_cache) {}

Session::Session(const ModelFile& model, Placement placement, DevicePool& pool, int context,
                 DType kv_cache)
    : Session(nullptr, &pool, model, std::move(placement), context, kv_cache) {}

Session::Session(std::unique_ptr<DevicePool> own, DevicePool* pool, const ModelFile& model,
                 Placement placement, int context, DType kv_cache)
    : own_pool_(std::move(own)),
      model_(model),
      arch_(architecture(model.arch)),
      dispatcher_(model.weights, std::move(placement), pool ? *pool : *own_pool_),
      context_(context ? context : model.config.max_seq_len) {
  TAPML_REQUIRE_USAGE(context_ > 0 && context_ <= (1 << 20),
                      "context length " + std::to_string(context_) + " is out of range");
  check_cache_memory(model, context_, kv_cache);
  for (const CacheSpec& c : arch_.cache(model.config, context_, kv_cache))
    cache_.push_back(dispatcher_.persistent(c.name, c.dtype, c.shape));
}

std::vector<float> Session::forward(std::span<const int32_t> tokens, bool all_logits) {
  for (int32_t t : tokens)
    TAPML_REQUIRE(t >= 0 && t < model_.config.vocab_size,
                  "token id " + std::to_string(t) + " is outside the vocabulary of " +
                      std::to_string(model_.config.vocab_size));
  if (pos_ == 0) decode_steps_ = 0;
  const bool prefill = pos_ == 0 || tokens.size() > 1;
  dispatcher_.set_phase(prefill ? Phase::prefill() : Phase::decode(++decode_steps_));
  std::vector<float> logits;
  try {
    Val out = arch_.forward(model_.config, dispatcher_, cache_, tokens, pos_, all_logits);
    logits = dispatcher_.read_f32(out);
  } catch (...) {
    dispatcher_.end_step();
    throw;
  }
  dispatcher_.end_step();
  pos_ += int(tokens.size());
  return logits;
}

}  // namespace tapml

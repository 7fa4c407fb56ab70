#include "model/architecture.h"

#include "core/error.h"
#include "model/families/families.h"
#include "model/hf_model.h"

namespace tapml {

namespace {
// Every family TapML runs.
const std::vector<const Architecture*>& families() {
  static const std::vector<const Architecture*> list = {
      &llama_architecture(),    &mistral_architecture(),   &mixtral_architecture(),
      &qwen2_architecture(),    &qwen2_moe_architecture(), &qwen3_architecture(),
      &gemma_architecture(),    &gemma2_architecture(),    &gemma3_architecture(),
      &phi2_architecture(),     &phi3_architecture(),      &gpt_neox_architecture(),
      &stablelm_architecture(), &olmo2_architecture(),     &starcoder2_architecture(),
      &granite_architecture(),  &gpt2_architecture(),      &falcon_architecture(),
      &cohere_architecture()};
  return list;
}
}  // namespace

const Architecture& architecture(std::string_view name) {
  for (const Architecture* a : families())
    if (a->name() == name) return *a;
  std::string known;
  for (const Architecture* a : families())
    known += (known.empty() ? "" : ", ") + std::string(a->name());
  throw Error("architecture '" + std::string(name) + "' is not supported (supported: " + known +
              ")");
}

const Architecture& architecture_for_hf(std::string_view model_type) {
  for (const Architecture* a : families())
    for (std::string_view t : a->hf_model_types())
      if (t == model_type) return *a;
  std::string known;
  for (const Architecture* a : families())
    for (std::string_view t : a->hf_model_types())
      known += (known.empty() ? "" : ", ") + std::string(t);
  throw Error("model_type '" + std::string(model_type) + "' is not supported (supported: " + known +
              ")");
}

ModelConfig Architecture::config_from_hf(const HfConfig& c) const {
  c.fail("the " + std::string(name()) + " family does not read Hugging Face folders");
}

std::map<std::string, Tensor> Architecture::weights_from_hf(const ModelConfig&, const HfConfig& c,
                                                            HfWeights&) const {
  c.fail("the " + std::string(name()) + " family does not read Hugging Face folders");
}

void Architecture::gguf_metadata(GgufKeys&, const ModelConfig&, const HfConfig& h) const {
  h.fail("the " + std::string(name()) + " family is not converted to GGUF yet");
}

void GgufKeys::u32(const std::string& key, int64_t x) {
  TAPML_REQUIRE(x >= 0 && x <= int64_t(UINT32_MAX),
                arch_ + "." + key + " = " + std::to_string(x) + " does not fit a U32");
  w_.set_u32(arch_ + "." + key, uint32_t(x));
}
void GgufKeys::file_type() { w_.set_u32("general.file_type", file_type_); }
void GgufKeys::f32(const std::string& key, double x) { w_.set_f32(arch_ + "." + key, float(x)); }
void GgufKeys::flag(const std::string& key, bool x) { w_.set_bool(arch_ + "." + key, x); }
void GgufKeys::text(const std::string& key, const std::string& x) {
  w_.set_string(arch_ + "." + key, x);
}

std::vector<std::string_view> architecture_names() {
  std::vector<std::string_view> out;
  for (const Architecture* a : families()) out.push_back(a->name());
  return out;
}

int gguf_hyperparameter(const gguf::File& f, const std::string& key,
                        std::optional<uint64_t> fallback, uint64_t max) {
  if (!f.has(key) && !fallback) throw Error(f.path() + ": metadata '" + key + "' is missing");
  uint64_t x = f.has(key) ? f.get_uint(key) : *fallback;
  if (x == 0 || x > max)
    throw Error(f.path() + ": " + key + " = " + std::to_string(x) + " is out of range (1 to " +
                std::to_string(max) + ")");
  return int(x);
}

}  // namespace tapml

// Llama models from GGUF files, format detection, and the check that a model has every
// weight the llama forward pass reads.
#include "model/model_file.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/mapped_file.h"

namespace tapml {

namespace {

constexpr uint64_t kMaxWidth = uint64_t(1) << 20;  // dims, heads, layers: far above real models

// A positive int hyperparameter, present or defaulted, within `max`.
int hyperparameter(const gguf::File& f, const std::string& key, std::optional<uint64_t> fallback,
                   uint64_t max = kMaxWidth) {
  if (!f.has(key) && !fallback) throw Error(f.path() + ": metadata '" + key + "' is missing");
  uint64_t x = f.has(key) ? f.get_uint(key) : *fallback;
  if (x == 0 || x > max)
    throw Error(f.path() + ": " + key + " = " + std::to_string(x) + " is out of range (1 to " +
                std::to_string(max) + ")");
  return int(x);
}

std::string magic_hex(const uint8_t* data, size_t size) {
  char buf[16] = "0x";
  for (size_t i = 0; i < 4 && i < size; ++i) std::snprintf(buf + 2 + 2 * i, 3, "%02x", data[i]);
  return buf;
}

}  // namespace

ModelFile model_from_gguf(std::shared_ptr<const gguf::File> file) {
  TAPML_REQUIRE(file != nullptr, "model_from_gguf: no file");
  const gguf::File& f = *file;
  if (!f.has("general.architecture"))
    throw Error(f.path() + ": general.architecture is missing (a vocabulary-only GGUF?)");
  const std::string& arch = f.get_string("general.architecture");
  if (arch != "llama")
    throw Error(f.path() + ": architecture '" + arch + "' is not supported (supported: llama)");

  ModelFile m;
  m.path = f.path();
  m.format = "gguf";
  m.arch = arch;
  LlamaConfig& c = m.config;
  c.dim = hyperparameter(f, "llama.embedding_length", std::nullopt);
  c.hidden_dim = hyperparameter(f, "llama.feed_forward_length", std::nullopt);
  c.n_layers = hyperparameter(f, "llama.block_count", std::nullopt);
  c.n_heads = hyperparameter(f, "llama.attention.head_count", std::nullopt);
  c.n_kv_heads = hyperparameter(f, "llama.attention.head_count_kv", uint64_t(c.n_heads));
  c.max_seq_len = hyperparameter(f, "llama.context_length", std::nullopt,
                                 uint64_t(std::numeric_limits<int>::max()));
  std::optional<uint64_t> even_split;
  if (c.dim % c.n_heads == 0) even_split = uint64_t(c.dim / c.n_heads);
  if (!even_split && !f.has("llama.attention.key_length"))
    throw Error(f.path() + ": llama.embedding_length " + std::to_string(c.dim) +
                " is not divisible by llama.attention.head_count " + std::to_string(c.n_heads) +
                " and llama.attention.key_length is missing");
  c.head_dim = hyperparameter(f, "llama.attention.key_length", even_split);
  c.rope_dim = hyperparameter(f, "llama.rope.dimension_count", uint64_t(c.head_dim));
  c.rope_base = float(f.get_float_or("llama.rope.freq_base", 10000.0));
  c.rms_eps = float(f.get_float_or("llama.attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_pairing = RopePairing::Adjacent;  // llama.cpp's converter permutes q/k to match

  if (f.has("llama.vocab_size")) {
    c.vocab_size = hyperparameter(f, "llama.vocab_size", std::nullopt);
  } else if (const gguf::TensorInfo* e = f.find_tensor("token_embd.weight");
             e && e->ne.size() == 2) {
    if (e->ne[1] > kMaxWidth)
      throw Error(f.path() + ": token_embd.weight has " + std::to_string(e->ne[1]) +
                  " rows, an absurd vocabulary size");
    c.vocab_size = int(e->ne[1]);
  } else {
    throw Error(f.path() + ": cannot tell the vocabulary size (no llama.vocab_size and no " +
                "2-D token_embd.weight)");
  }
  c.shared_classifier = f.find_tensor("output.weight") == nullptr;

  for (const gguf::TensorInfo& ti : f.tensors()) m.weights.emplace(ti.name, f.tensor(ti.name));
  m.gguf = std::move(file);
  return m;
}

ModelFile load_gguf(const std::string& path) {
  return model_from_gguf(std::make_shared<const gguf::File>(gguf::File::open(path)));
}

ModelFile load_model(const std::string& path) {
  std::shared_ptr<const MappedFile> mapped = MappedFile::open(path);
  const uint8_t* data = mapped->data();
  size_t size = mapped->size();
  if (size < 4)
    throw Error(path + ": file of " + std::to_string(size) + " bytes is too small to be a model");

  ModelFile m;
  if (std::memcmp(data, "GGUF", 4) == 0) {
    m = model_from_gguf(
        std::make_shared<const gguf::File>(gguf::File::from_memory(mapped, data, size, path)));
  } else if (std::memcmp(data, "24ka", 4) == 0) {
    // llama2.c's later export formats; its reader names them.
    m = load_llama2c_memory(mapped, data, size, path);
  } else if (std::string problem = llama2c_header_problem(data, size); problem.empty()) {
    m = load_llama2c_memory(mapped, data, size, path);
  } else {
    throw Error(path + ": not a GGUF file or a llama2.c checkpoint (magic " +
                magic_hex(data, size) + "; as a llama2.c header: " + problem + ")");
  }
  validate_llama(m);
  return m;
}

void validate_llama(const ModelFile& m) {
  const LlamaConfig& c = m.config;
  auto fail = [&](const std::string& what) { throw Error(m.path + ": " + what); };
  auto positive = [&](const char* name, int x) {
    if (x <= 0) fail(std::string(name) + " " + std::to_string(x) + " must be positive");
  };
  positive("dim", c.dim);
  positive("hidden_dim", c.hidden_dim);
  positive("n_layers", c.n_layers);
  positive("n_heads", c.n_heads);
  positive("n_kv_heads", c.n_kv_heads);
  positive("vocab_size", c.vocab_size);
  positive("max_seq_len", c.max_seq_len);
  positive("head_dim", c.head_dim);
  positive("rope_dim", c.rope_dim);
  if (c.n_heads % c.n_kv_heads != 0)
    fail("n_heads " + std::to_string(c.n_heads) + " is not a multiple of n_kv_heads " +
         std::to_string(c.n_kv_heads));
  if (c.rope_dim > c.head_dim || c.rope_dim % 2 != 0)
    fail("rope_dim " + std::to_string(c.rope_dim) + " must be even and at most head_dim " +
         std::to_string(c.head_dim));
  if (!(std::isfinite(c.rms_eps) && c.rms_eps > 0))
    fail("rms_eps " + std::to_string(c.rms_eps) + " must be a positive number");
  if (!(std::isfinite(c.rope_base) && c.rope_base > 0))
    fail("rope_base " + std::to_string(c.rope_base) + " must be a positive number");

  for (const WeightSpec& spec : llama_weight_specs(c)) {
    auto it = m.weights.find(spec.name);
    if (it == m.weights.end()) fail("missing tensor " + spec.name);
    const Tensor& t = it->second;
    if (t.shape() != spec.shape)
      fail(spec.name + " has shape " + t.shape().str() + ", expected " + spec.shape.str());
    if (t.dtype() != DType::F32 && t.dtype() != DType::F16 && t.dtype() != DType::BF16)
      fail(spec.name + " has dtype " + std::string(dtype_name(t.dtype())) +
           ", expected f32, f16 or bf16");
  }
}

std::vector<WeightSpec> llama_weight_specs(const LlamaConfig& c) {
  const int64_t D = c.dim, H = c.hidden_dim, V = c.vocab_size;
  const int64_t Q = int64_t(c.n_heads) * c.head_dim, KV = int64_t(c.n_kv_heads) * c.head_dim;
  std::vector<WeightSpec> specs{{"token_embd.weight", {V, D}}};
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    specs.push_back({b + "attn_norm.weight", {D}, true});
    specs.push_back({b + "attn_q.weight", {Q, D}});
    specs.push_back({b + "attn_k.weight", {KV, D}});
    specs.push_back({b + "attn_v.weight", {KV, D}});
    specs.push_back({b + "attn_output.weight", {D, Q}});
    specs.push_back({b + "ffn_norm.weight", {D}, true});
    specs.push_back({b + "ffn_gate.weight", {H, D}});
    specs.push_back({b + "ffn_up.weight", {H, D}});
    specs.push_back({b + "ffn_down.weight", {D, H}});
  }
  specs.push_back({"output_norm.weight", {D}, true});
  if (!c.shared_classifier) specs.push_back({"output.weight", {V, D}});
  return specs;
}

}  // namespace tapml

// make_random_gguf: writes a Llama-shaped GGUF v3 with seeded random weights and a synthetic
// SentencePiece-style ("llama") vocabulary, so TapML and llama.cpp can both load the same
// file of any size for speed measurements without downloading a model.
//
// The output is deterministic: the same flags give the same bytes. Every weight element is a
// pure function of (seed, tensor name, element index), so the streaming writer can produce
// the tensors chunk by chunk and a file larger than memory is possible.
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "format/gguf.h"
#include "model/families/families.h"
#include "model/model_file.h"

namespace {

using namespace tapml;

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// An approximately normal sample with mean 0 and standard deviation `stddev` from one 64-bit
// hash: the sum of four 16-bit uniforms (Irwin-Hall), rescaled to unit variance. Its tails
// end at about 3.5 sigma, which is exactly what keeps activations finite in a random model;
// exactness of the distribution does not matter for a speed benchmark.
float normal_from_bits(uint64_t bits, float stddev) {
  double sum = 0;
  for (int i = 0; i < 4; ++i) sum += double((bits >> (16 * i)) & 0xFFFF) / 65535.0;
  // Four U(0,1) have mean 2 and variance 4/12; sqrt(3) brings that to 1.
  return float((sum - 2.0) * std::sqrt(3.0)) * stddev;
}

struct Options {
  std::string out;
  int dim = 768, layers = 12, heads = 12, kv_heads = 4, hidden = 2048, vocab = 32000,
      context = 2048;
  std::string dtype = "f32";
  uint64_t seed = 1;
  float stddev = 0.02f;
  bool tie_embeddings = false;
};

// A vocabulary shaped like Llama 2's: <unk>, <s>, </s>, the 256 byte-fallback pieces, then
// pieces made of letters, with and without the word-start mark "▁", shortest first. All
// pieces are distinct (llama.cpp maps text to ids through them). Scores fall with the id so
// that BPE merges prefer short, early pieces, as a trained vocabulary's do.
struct Vocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;
};

Vocab make_vocab(int n) {
  // Token types as llama.cpp numbers them.
  constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kByte = 6;
  Vocab v;
  auto add = [&](std::string piece, int32_t type) {
    v.scores.push_back(type == kNormal ? -float(v.tokens.size()) : 0.0f);
    v.tokens.push_back(std::move(piece));
    v.types.push_back(type);
  };
  add("<unk>", kUnknown);
  add("<s>", kControl);
  add("</s>", kControl);
  for (int b = 0; b < 256; ++b) {
    char piece[8];
    std::snprintf(piece, sizeof piece, "<0x%02X>", b);
    add(piece, kByte);
  }
  const std::string mark = "\xE2\x96\x81";  // U+2581, SentencePiece's word-start mark
  add(mark, kNormal);
  // Letter strings of growing length: "a".."z", "aa".."zz", ... each as a word start and as
  // a word continuation.
  for (int len = 1; int(v.tokens.size()) < n; ++len) {
    std::vector<int> digits(size_t(len), 0);
    while (int(v.tokens.size()) < n) {
      std::string s;
      for (int d : digits) s += char('a' + d);
      add(mark + s, kNormal);
      if (int(v.tokens.size()) < n) add(s, kNormal);
      int i = len - 1;
      while (i >= 0 && ++digits[size_t(i)] == 26) digits[size_t(i--)] = 0;
      if (i < 0) break;  // all strings of this length done
    }
  }
  return v;
}

void check(const Options& o) {
  TAPML_REQUIRE(!o.out.empty(), "--out is required");
  TAPML_REQUIRE(
      o.dim > 0 && o.layers > 0 && o.heads > 0 && o.kv_heads > 0 && o.hidden > 0 && o.context > 0,
      "sizes must be positive");
  TAPML_REQUIRE(o.dim % o.heads == 0, "--dim must be a multiple of --heads");
  TAPML_REQUIRE(o.heads % o.kv_heads == 0, "--heads must be a multiple of --kv-heads");
  TAPML_REQUIRE((o.dim / o.heads) % 2 == 0, "the head size (dim / heads) must be even for RoPE");
  TAPML_REQUIRE(o.vocab >= 260,
                "--vocab must hold at least the 3 special and 256 byte pieces and one more");
  TAPML_REQUIRE(o.dtype == "f32" || o.dtype == "f16", "--dtype must be f32 or f16");
}

ModelConfig config_of(const Options& o) {
  ModelConfig c;
  c.dim = o.dim, c.hidden_dim = o.hidden, c.n_layers = o.layers;
  c.n_heads = o.heads, c.n_kv_heads = o.kv_heads, c.vocab_size = o.vocab;
  c.max_seq_len = o.context;
  c.head_dim = c.rope_dim = o.dim / o.heads;
  c.shared_classifier = o.tie_embeddings;
  return c;
}

int64_t parameter_count(const Options& o) {
  int64_t n = 0;
  for (const WeightSpec& spec : llama_architecture().weights(config_of(o))) n += spec.shape.numel();
  return n;
}

void write_model(const Options& o) {
  const DType wtype = o.dtype == "f16" ? DType::F16 : DType::F32;
  const int head_dim = o.dim / o.heads;

  gguf::Writer w;
  w.set_string("general.architecture", "llama");
  w.set_string("general.name",
               "random-llama-" + std::to_string(parameter_count(o) / 1000000) + "M-" + o.dtype);
  // llama.cpp's llama_ftype: 0 = all F32, 1 = mostly F16 (norms stay F32).
  w.set_u32("general.file_type", wtype == DType::F16 ? 1 : 0);
  w.set_u32("llama.context_length", uint32_t(o.context));
  w.set_u32("llama.embedding_length", uint32_t(o.dim));
  w.set_u32("llama.block_count", uint32_t(o.layers));
  w.set_u32("llama.feed_forward_length", uint32_t(o.hidden));
  w.set_u32("llama.rope.dimension_count", uint32_t(head_dim));
  w.set_f32("llama.rope.freq_base", 10000.0f);
  w.set_u32("llama.attention.head_count", uint32_t(o.heads));
  w.set_u32("llama.attention.head_count_kv", uint32_t(o.kv_heads));
  w.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.set_u32("llama.vocab_size", uint32_t(o.vocab));

  Vocab v = make_vocab(o.vocab);
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", v.tokens);
  w.set_f32_array("tokenizer.ggml.scores", v.scores);
  w.set_i32_array("tokenizer.ggml.token_type", v.types);
  w.set_u32("tokenizer.ggml.unknown_token_id", 0);
  w.set_u32("tokenizer.ggml.bos_token_id", 1);
  w.set_u32("tokenizer.ggml.eos_token_id", 2);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);

  // A matrix [rows, cols] row-major (GGUF ne = [cols, rows]) of N(0, stddev) elements.
  auto add_random = [&](const std::string& name, int64_t rows, int64_t cols) {
    const uint64_t key = splitmix64(o.seed ^ fnv1a(name));
    const float sd = o.stddev;
    const DType dt = wtype;
    w.add_tensor(name, dt, Shape{rows, cols},
                 [key, sd, dt](uint64_t offset, std::span<std::byte> chunk) {
                   const size_t es = dtype_size(dt);
                   const uint64_t first = offset / es;
                   const size_t n = chunk.size() / es;
                   if (dt == DType::F32) {
                     float* p = reinterpret_cast<float*>(chunk.data());
                     for (size_t i = 0; i < n; ++i)
                       p[i] = normal_from_bits(splitmix64(key + first + i), sd);
                   } else {
                     uint16_t* p = reinterpret_cast<uint16_t*>(chunk.data());
                     for (size_t i = 0; i < n; ++i)
                       p[i] = f32_to_f16(normal_from_bits(splitmix64(key + first + i), sd));
                   }
                 });
  };
  // Norm weights are ones and stay f32 whatever --dtype says, as llama.cpp's converters
  // keep every 1-D tensor in f32.
  auto add_ones = [&](const std::string& name, int64_t n) {
    w.add_tensor(name, DType::F32, Shape{n}, [](uint64_t, std::span<std::byte> chunk) {
      float* p = reinterpret_cast<float*>(chunk.data());
      for (size_t i = 0; i < chunk.size() / 4; ++i) p[i] = 1.0f;
    });
  };

  for (const WeightSpec& spec : llama_architecture().weights(config_of(o))) {
    if (spec.norm)
      add_ones(spec.name, spec.shape[0]);
    else
      add_random(spec.name, spec.shape[0], spec.shape[1]);
  }
  w.write(o.out);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Writes a Llama-shaped GGUF with seeded random weights and a synthetic vocabulary"};
  app.add_option("--out", o.out, "output path")->required();
  app.add_option("--dim", o.dim, "embedding width")->capture_default_str();
  app.add_option("--layers", o.layers, "transformer blocks")->capture_default_str();
  app.add_option("--heads", o.heads, "attention heads")->capture_default_str();
  app.add_option("--kv-heads", o.kv_heads, "key/value heads (grouped-query attention)")
      ->capture_default_str();
  app.add_option("--hidden", o.hidden, "feed-forward width")->capture_default_str();
  app.add_option("--vocab", o.vocab, "vocabulary size (>= 260)")->capture_default_str();
  app.add_option("--context", o.context, "declared context length")->capture_default_str();
  app.add_option("--dtype", o.dtype, "weight matrices: f32 or f16")->capture_default_str();
  app.add_option("--seed", o.seed, "random seed")->capture_default_str();
  app.add_option("--stddev", o.stddev, "standard deviation of the weights")->capture_default_str();
  app.add_flag("--tie-embeddings", o.tie_embeddings,
               "no output.weight: logits use token_embd.weight");
  CLI11_PARSE(app, argc, argv);
  try {
    check(o);
    write_model(o);
    std::printf("%s: %.1fM parameters, %s weights\n", o.out.c_str(),
                double(parameter_count(o)) / 1e6, o.dtype.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_random_gguf: %s\n", e.what());
    return 1;
  }
  return 0;
}

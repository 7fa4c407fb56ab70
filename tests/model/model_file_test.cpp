// load_model / load_gguf / validate_model on the shared models and on small written ones.
#include "model/model_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/mapped_file.h"
#include "support/errors.h"
#include "support/shared.h"

namespace tapml {
namespace {

using testing::contains;
using testing::error_of;

namespace fs = std::filesystem;

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// ---------------------------------------------------------------------------------------
// The shared models

TEST(ModelFile, Stories260KLoadsFromBothFormatsWithIdenticalWeights) {
  ModelFile g = load_model(testing::shared_path("models/stories260K/stories260K.gguf"));
  ModelFile b = load_model(testing::shared_path("models/stories260K/stories260K.bin"));
  EXPECT_EQ(g.format, "gguf");
  EXPECT_EQ(b.format, "llama2c");
  ASSERT_NE(g.gguf, nullptr);
  EXPECT_EQ(b.gguf, nullptr);
  for (const ModelFile* m : {&g, &b}) {
    const ModelConfig& c = m->config;
    EXPECT_EQ(m->arch, "llama");
    EXPECT_EQ(c.dim, 64);
    EXPECT_EQ(c.hidden_dim, 172);
    EXPECT_EQ(c.n_layers, 5);
    EXPECT_EQ(c.n_heads, 8);
    EXPECT_EQ(c.n_kv_heads, 4);
    EXPECT_EQ(c.vocab_size, 512);
    EXPECT_EQ(c.head_dim, 8);
    EXPECT_EQ(c.rope_dim, 8);
    EXPECT_EQ(c.rope_base, 10000.0f);
    EXPECT_EQ(c.norm_eps, 1e-5f);
    EXPECT_EQ(c.rope_pairing, RopePairing::Adjacent);
  }
  EXPECT_EQ(b.config.max_seq_len, 512);
  // llama.cpp's llama2c converter writes its own default context (128), not the
  // checkpoint's seq_len.
  EXPECT_EQ(g.config.max_seq_len, 128);
  EXPECT_TRUE(b.config.shared_classifier);
  EXPECT_FALSE(g.config.shared_classifier);  // the converter wrote output.weight

  ASSERT_EQ(g.weights.size(), 48u);
  ASSERT_EQ(b.weights.size(), 47u);
  size_t compared = 0;
  for (const auto& [name, gt] : g.weights) {
    // The .bin shares its classifier with the embedding.
    const std::string bin_name = name == "output.weight" ? "token_embd.weight" : name;
    ASSERT_EQ(b.weights.count(bin_name), 1u) << name;
    const Tensor& bt = b.weights.at(bin_name);
    EXPECT_EQ(gt.dtype(), DType::F32) << name;
    EXPECT_EQ(gt.shape(), bt.shape()) << name;
    ASSERT_EQ(gt.nbytes(), bt.nbytes()) << name;
    EXPECT_EQ(std::memcmp(gt.bytes(), bt.bytes(), gt.nbytes()), 0) << name << " differs";
    ++compared;
  }
  EXPECT_EQ(compared, 48u);
}

TEST(ModelFile, TinyRandomHasF16WeightsAndTheLlama2Vocabulary) {
  ModelFile m = load_model(testing::shared_path("models/tiny-random/llama-2-tiny-random.gguf"));
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.hidden_dim, 32);
  EXPECT_EQ(c.n_layers, 1);
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.vocab_size, 32000);  // from token_embd.weight: the file has no llama.vocab_size
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.rope_dim, 4);
  EXPECT_FALSE(c.shared_classifier);
  EXPECT_EQ(m.weights.at("token_embd.weight").dtype(), DType::F16);
  EXPECT_EQ(m.weights.at("token_embd.weight").shape(), Shape({32000, 8}));
  EXPECT_EQ(m.weights.at("blk.0.ffn_down.weight").dtype(), DType::F16);
  EXPECT_EQ(m.weights.at("blk.0.attn_norm.weight").dtype(), DType::F32);
  EXPECT_EQ(m.gguf->get_array("tokenizer.ggml.tokens").size(), 32000u);
}

TEST(ModelFile, WeightsOutliveTheModelFile) {
  Tensor t;
  {
    ModelFile m = load_gguf(testing::shared_path("models/stories260K/stories260K.gguf"));
    t = m.weights.at("blk.4.ffn_up.weight");
  }
  float sum = 0;
  for (float x : t.to_f32()) sum += x;
  EXPECT_TRUE(std::isfinite(sum));
}

// ---------------------------------------------------------------------------------------
// Small written models

struct TinyLlama {
  std::string arch = "llama";
  bool classifier = true;
  std::string drop;         // a tensor to leave out
  std::string misshape;     // a tensor to give a wrong shape
  bool block_count = true;  // write llama.block_count
  uint32_t layers = 2;
  uint32_t declared_layers = 0;  // block_count to write when not 0 (else layers)

  TinyLlama& with_arch(std::string a) {
    arch = std::move(a);
    return *this;
  }
  TinyLlama& without_classifier() {
    classifier = false;
    return *this;
  }
  TinyLlama& dropping(std::string name) {
    drop = std::move(name);
    return *this;
  }
  TinyLlama& misshaping(std::string name) {
    misshape = std::move(name);
    return *this;
  }
  TinyLlama& without_block_count() {
    block_count = false;
    return *this;
  }
  TinyLlama& with_layers(uint32_t n) {
    layers = n;
    return *this;
  }
};

// dim 32, hidden 64, 4 heads of 8, 2 KV heads, vocab 16: F16 matrices, F32 norms.
std::string write_tiny_llama(const TinyLlama& o, const std::string& file = "tiny.gguf") {
  gguf::Writer w;
  w.set_string("general.architecture", o.arch);
  w.set_u32(o.arch + ".embedding_length", 32);
  w.set_u32(o.arch + ".feed_forward_length", 64);
  if (o.block_count)
    w.set_u32(o.arch + ".block_count", o.declared_layers ? o.declared_layers : o.layers);
  w.set_u32(o.arch + ".attention.head_count", 4);
  w.set_u32(o.arch + ".attention.head_count_kv", 2);
  w.set_u32(o.arch + ".context_length", 256);
  w.set_f32(o.arch + ".rope.freq_base", 500000.0f);
  w.set_f32(o.arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  auto add = [&](const std::string& name, Shape shape, DType dt) {
    if (name == o.drop) return;
    if (name == o.misshape) shape[0] += 1;
    Tensor t(dt, shape);
    auto* p = t.mutable_data<uint16_t>();
    if (dt == DType::F16)
      for (int64_t k = 0; k < t.numel(); ++k) p[k] = f32_to_f16(float(k % 7) * 0.125f);
    w.add_tensor(name, t);
  };
  add("token_embd.weight", {16, 32}, DType::F16);
  for (uint32_t l = 0; l < o.layers; ++l) {
    std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {32}, DType::F32);
    add(b + "attn_q.weight", {32, 32}, DType::F16);
    add(b + "attn_k.weight", {16, 32}, DType::F16);
    add(b + "attn_v.weight", {16, 32}, DType::F16);
    add(b + "attn_output.weight", {32, 32}, DType::F16);
    add(b + "ffn_norm.weight", {32}, DType::F32);
    add(b + "ffn_gate.weight", {64, 32}, DType::BF16);
    add(b + "ffn_down.weight", {32, 64}, DType::BF16);
    add(b + "ffn_up.weight", {64, 32}, DType::BF16);
  }
  add("output_norm.weight", {32}, DType::F32);
  if (o.classifier) add("output.weight", {16, 32}, DType::F16);
  std::string path = testing::temp_dir() + "/" + file;
  w.write(path);
  return path;
}

// A header may declare any number of layers; the list of tensors such a model needs is not
// built before the file is seen to hold far too few (a fuzzed file with 10^6 layers took
// seconds to be refused, and memory in proportion).
TEST(ModelFile, FarMoreLayersThanTensorsAreRefusedAtOnce) {
  TinyLlama o;
  o.declared_layers = 1000000;
  const std::string path = write_tiny_llama(o, "many_layers.gguf");
  EXPECT_NE(testing::error_of([&] {
              load_model(path);
            }).find("declares 1000000 layers but holds only 21 tensors"),
            std::string::npos)
      << testing::error_of([&] { load_model(path); });
}

TEST(ModelFile, ReadsAWrittenLlama) {
  ModelFile m = load_model(write_tiny_llama({}));
  const ModelConfig& c = m.config;
  EXPECT_EQ(c.dim, 32);
  EXPECT_EQ(c.hidden_dim, 64);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.vocab_size, 16);
  EXPECT_EQ(c.max_seq_len, 256);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.rope_dim, 8);
  EXPECT_EQ(c.rope_base, 500000.0f);
  EXPECT_EQ(c.norm_eps, 1e-6f);
  EXPECT_FALSE(c.shared_classifier);
  EXPECT_EQ(m.weights.size(), 1u + 2u * 9u + 2u);
  EXPECT_EQ(m.weights.at("blk.1.ffn_up.weight").dtype(), DType::BF16);

  ModelFile shared = load_model(write_tiny_llama(TinyLlama().without_classifier(), "shared.gguf"));
  EXPECT_TRUE(shared.config.shared_classifier);
}

TEST(ModelFile, RejectsUnknownArchitecture) {
  std::string path = write_tiny_llama(TinyLlama().with_arch("mamba"));
  const std::string want = path + ": architecture 'mamba' is not supported (supported: llama, ";
  EXPECT_EQ(error_of([&] { load_model(path); }).rfind(want, 0), 0u);
  EXPECT_EQ(error_of([&] { load_gguf(path); }).rfind(want, 0), 0u);
  // Another family reads the same keys but wants its own tensors: a llama labelled gpt2
  // lacks GPT-2's learned positions.
  std::string gpt2 = write_tiny_llama(TinyLlama().with_arch("gpt2"), "gpt2.gguf");
  EXPECT_EQ(error_of([&] { load_model(gpt2); }), gpt2 + ": missing tensor position_embd.weight");
}

TEST(ModelFile, RejectsMissingOrBadHyperparameters) {
  std::string path = write_tiny_llama(TinyLlama().without_block_count());
  EXPECT_EQ(error_of([&] { load_model(path); }),
            path + ": metadata 'llama.block_count' is missing");
  std::string zero = write_tiny_llama(TinyLlama().with_layers(0), "zero.gguf");
  EXPECT_TRUE(
      contains(error_of([&] { load_model(zero); }), "llama.block_count = 0 is out of range"));
}

TEST(ModelFile, ValidationNamesTheFirstProblem) {
  std::string missing = write_tiny_llama(TinyLlama().dropping("blk.1.ffn_down.weight"));
  EXPECT_EQ(error_of([&] { load_model(missing); }),
            missing + ": missing tensor blk.1.ffn_down.weight");
  // load_gguf reads what is there; checking is load_model's (or the caller's) job.
  EXPECT_NO_THROW(load_gguf(missing));

  std::string shape = write_tiny_llama(TinyLlama().misshaping("blk.0.attn_k.weight"), "shape.gguf");
  EXPECT_EQ(error_of([&] { load_model(shape); }),
            shape + ": blk.0.attn_k.weight has shape [17, 32], expected [16, 32]");

  ModelFile m = load_gguf(write_tiny_llama({}, "ok.gguf"));
  ModelFile bad = m;
  bad.weights["output_norm.weight"] = Tensor(DType::I32, {32});
  EXPECT_TRUE(contains(error_of([&] { validate_model(bad); }),
                       "output_norm.weight has dtype i32, expected f32, f16, bf16 or a quantized "
                       "block type"));
  bad = m;
  bad.config.rope_dim = 7;
  EXPECT_TRUE(contains(error_of([&] { validate_model(bad); }), "rope_dim 7 must be even"));
  bad = m;
  bad.config.n_kv_heads = 3;
  EXPECT_TRUE(contains(error_of([&] { validate_model(bad); }),
                       "n_heads 4 is not a multiple of n_kv_heads 3"));
  bad = m;
  bad.config.norm_eps = 0;
  EXPECT_TRUE(contains(error_of([&] { validate_model(bad); }), "norm_eps"));
  bad = m;
  bad.config.vocab_size = -1;
  EXPECT_TRUE(contains(error_of([&] { validate_model(bad); }), "vocab_size -1 must be positive"));
}

TEST(ModelFile, BlockWeightsLoadOtherQuantizedTypesAreNamed) {
  std::string path = write_tiny_llama({});
  std::vector<uint8_t> b = read_bytes(path);
  // Retype blk.0.attn_q.weight ([32, 32] F16, 2048 bytes) as Q4_0 or IQ4_NL (576 bytes
  // each): the type field follows the name, n_dims and two ne values.
  const std::string name = "blk.0.attn_q.weight";
  auto at = std::search(b.begin(), b.end(), name.begin(), name.end());
  ASSERT_NE(at, b.end());
  size_t type_at = size_t(at - b.begin()) + name.size() + 4 + 16;
  uint32_t type;
  std::memcpy(&type, &b[type_at], 4);
  ASSERT_EQ(type, 1u);
  auto retyped = [&](uint32_t id, const std::string& file) {
    std::memcpy(&b[type_at], &id, 4);
    std::string q = testing::temp_dir() + "/" + file;
    write_bytes(q, b);
    return q;
  };
  std::string q4 = retyped(2, "q4.gguf");
  ModelFile m = load_model(q4);
  EXPECT_EQ(m.weights.at(name).dtype(), DType::Q4_0);
  EXPECT_EQ(m.weights.at(name).nbytes(), 32 * 18u);
  std::string iq = retyped(20, "iq4.gguf");
  EXPECT_EQ(error_of([&] { load_model(iq); }),
            iq + ": tensor blk.0.attn_q.weight has type IQ4_NL (id 20), which TapML cannot read "
                 "yet");
  // A block type where a vector belongs is refused by name.
  ModelFile bad = load_gguf(path);
  bad.weights["output_norm.weight"] = Tensor(DType::Q8_0, {32});
  EXPECT_TRUE(contains(error_of([&] { validate_model(bad); }),
                       "output_norm.weight has dtype q8_0 [32]; quantized blocks are read in 2-D "
                       "weight matrices only"));
}

// ---------------------------------------------------------------------------------------
// Format detection

TEST(ModelFile, LoadModelRejectsFilesOfNeitherFormat) {
  std::string dir = testing::temp_dir();
  std::string text = dir + "/notes.txt";
  std::ofstream(text) << "hello, this is not a model at all, just some text\n";
  std::string m = error_of([&] { load_model(text); });
  EXPECT_TRUE(contains(m, text + ": not a GGUF file or a llama2.c checkpoint (magic 0x68656c6c"));
  EXPECT_TRUE(contains(m, "as a llama2.c header: dim 1819043176 is absurdly large"));

  std::string tiny = dir + "/tiny";
  std::ofstream(tiny) << "GG";
  EXPECT_EQ(error_of([&] { load_model(tiny); }),
            tiny + ": file of 2 bytes is too small to be a model");

  EXPECT_EQ(error_of([&] { load_model(dir); }),
            dir + ": a folder without config.json (a Hugging Face model folder has one)");
  EXPECT_EQ(error_of([] { load_model("/nonexistent/x.gguf"); }),
            "/nonexistent/x.gguf: cannot open: no such file");
  EXPECT_EQ(error_of([] { load_model("/dev/null"); }), "/dev/null: not a regular file");
}

TEST(ModelFile, LoadModelReportsDamagedFilesOfEitherFormat) {
  std::vector<uint8_t> g = read_bytes(write_tiny_llama({}));
  g.resize(g.size() / 2);
  std::string cut = testing::temp_dir() + "/cut.gguf";
  write_bytes(cut, g);
  EXPECT_TRUE(contains(error_of([&] { load_model(cut); }), "past the end of the file"));

  std::vector<uint8_t> b = read_bytes(testing::shared_path("models/stories260K/stories260K.bin"));
  b.resize(b.size() - 100);
  std::string bin = testing::temp_dir() + "/cut.bin";
  write_bytes(bin, b);
  EXPECT_EQ(error_of([&] { load_model(bin); }),
            bin + ": truncated: needs 1056540 bytes, file has 1056440");
}

// ---------------------------------------------------------------------------------------
// MappedFile

TEST(MappedFile, MapsWholeFilesAndExplainsFailures) {
  std::string dir = testing::temp_dir();
  std::string path = dir + "/data";
  std::ofstream(path) << "abcdef";
  std::shared_ptr<const MappedFile> m = MappedFile::open(path);
  EXPECT_EQ(m->size(), 6u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(m->data()), 6), "abcdef");
  EXPECT_EQ(m->path(), path);

  std::string empty = dir + "/empty";
  std::ofstream(empty).flush();
  std::shared_ptr<const MappedFile> e = MappedFile::open(empty);
  EXPECT_EQ(e->size(), 0u);
  EXPECT_NE(e->data(), nullptr);

  EXPECT_EQ(error_of([&] { MappedFile::open(dir + "/none"); }),
            dir + "/none: cannot open: no such file");
  EXPECT_EQ(error_of([&] { MappedFile::open(dir); }), dir + ": is a directory, expected a file");
  EXPECT_EQ(error_of([&] { MappedFile::open(path + "/below"); }),
            path + "/below: cannot open: a component of the path is not a directory");
  EXPECT_EQ(error_of([] { MappedFile::open(""); }), "empty file path");
  if (geteuid() != 0) {  // root reads regardless of permissions
    std::string locked = dir + "/locked";
    std::ofstream(locked) << "x";
    fs::permissions(locked, fs::perms::none);
    EXPECT_EQ(error_of([&] { MappedFile::open(locked); }),
              locked + ": cannot open: permission denied");
  }
}

}  // namespace
}  // namespace tapml

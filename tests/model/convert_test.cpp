// `tapml convert`'s library: every shared Hugging Face family folder written as the GGUF file
// llama.cpp's converter makes, read back by TapML, must run exactly as the folder (the golden
// ids and logits of transformers' float64 run); in f16 within the error its weights' rounding
// explains. And the file's layout is llama.cpp's: architecture, keys, names, dtypes, the
// permuted q/k rows of Llama, Gemma's 1 + w norms, Falcon's attn_norm_2.
#include "model/convert.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "format/gguf.h"
#include "format/safetensors.h"
#include "model/hf_model.h"
#include "model/model_file.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/family_golden.h"
#include "support/shared.h"

namespace tapml {
namespace {

using testing::shared_path;

using testing::FamilyGolden;

FamilyGolden read_golden(const std::string& dir) { return testing::read_family_golden(dir); }

std::vector<std::string> family_names() {
  return testing::family_names(shared_path("models/families"));
}

std::string folder(const std::string& family) { return shared_path("models/families/" + family); }

// Each folder converted once per dtype for the whole test program.
const std::string& converted(const std::string& family, DType dtype) {
  static std::map<std::pair<std::string, DType>, std::string> done;
  auto key = std::make_pair(family, dtype);
  auto it = done.find(key);
  if (it != done.end()) return it->second;
  std::string path =
      testing::temp_dir() + "/" + family + "-" + std::string(dtype_name(dtype)) + ".gguf";
  ConvertOptions o;
  o.dtype = dtype;
  convert_hf_folder(folder(family), path, o);
  return done[key] = path;
}

float max_abs(const std::vector<float>& v) {
  float m = 0;
  for (float x : v) m = std::max(m, std::fabs(x));
  return m;
}

// llama.cpp's general.architecture for each shared folder.
const std::map<std::string, std::string> kArch = {
    {"llama", "llama"},           {"llama31", "llama"},     {"mistral", "llama"},
    {"mixtral", "llama"},         {"qwen2", "qwen2"},       {"qwen2_moe", "qwen2moe"},
    {"qwen3", "qwen3"},           {"gemma", "gemma"},       {"gemma2", "gemma2"},
    {"gemma3", "gemma3"},         {"phi3", "phi3"},         {"phi", "phi2"},
    {"gpt_neox", "gptneox"},      {"stablelm", "stablelm"}, {"olmo2", "olmo2"},
    {"starcoder2", "starcoder2"}, {"granite", "granite"},   {"gpt2", "gpt2"},
    {"falcon", "falcon"},         {"cohere", "command-r"}};

struct Variant {
  std::string family, backend;
};

void PrintTo(const Variant& v, std::ostream* os) { *os << v.family << "/" << v.backend; }

class ConvertedGoldens : public ::testing::TestWithParam<Variant> {};

TEST_P(ConvertedGoldens, GreedyIdsAndLogitsMatchTransformers) {
  const std::string dir = folder(GetParam().family);
  ModelFile model = load_model(converted(GetParam().family, DType::F32));
  EXPECT_EQ(model.format, "gguf");
  FamilyGolden g = read_golden(dir);
  testing::GoldenRun r = testing::run_against_golden(model, g, GetParam().backend);
  EXPECT_EQ(r.ids, g.tokens);
  EXPECT_LE(r.worst, 1e-4) << "largest |logit| " << r.largest;
  EXPECT_GT(r.largest, 0.1f);
}

std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (const std::string& f : family_names())
    for (const char* b : {"ref", "cpu"}) out.push_back({f, b});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Shared, ConvertedGoldens, ::testing::ValuesIn(variants()),
                         [](const ::testing::TestParamInfo<Variant>& info) {
                           return info.param.family + "_" + info.param.backend;
                         });

class ConvertedFamily : public ::testing::TestWithParam<std::string> {};

// The file reads back as the folder's model, with llama.cpp's architecture and the keys it
// needs to load a model without a tokenizer.
TEST_P(ConvertedFamily, ReadsBackAsTheFolder) {
  const std::string family = GetParam();
  ModelFile hf = load_model(folder(family));
  ModelFile g = load_model(converted(family, DType::F32));
  EXPECT_EQ(config_difference(hf.config, g.config), "");
  const gguf::File& f = *g.gguf;
  const std::string arch = f.get_string("general.architecture");
  EXPECT_EQ(arch, kArch.at(family));
  EXPECT_EQ(f.get_string("general.type"), "model");
  // GPTNeoXModel writes no general.file_type; the others write 0, all f32.
  if (family == "gpt_neox") {
    EXPECT_FALSE(f.has("general.file_type"));
  } else {
    EXPECT_EQ(f.get_uint("general.file_type"), 0u);
  }
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "none");
  EXPECT_EQ(f.get_uint(arch + ".vocab_size"), uint64_t(hf.config.vocab_size));
  EXPECT_EQ(f.get_uint(arch + ".block_count"), uint64_t(hf.config.n_layers));
  EXPECT_EQ(f.get_uint(arch + ".embedding_length"), uint64_t(hf.config.dim));
  EXPECT_EQ(f.get_uint(arch + ".attention.head_count"), uint64_t(hf.config.n_heads));
  EXPECT_EQ(f.get_uint("general.quantization_version"), 2u);
  // Every tensor is one the family reads, f32 in an f32 file.
  EXPECT_EQ(f.tensors().size(), architecture(g.arch).weights(g.config).size());
  for (const gguf::TensorInfo& t : f.tensors()) EXPECT_EQ(t.type, 0u) << t.name;
}

// In an f16 file the matrices are f16 and what llama.cpp keeps f32 stays f32: vectors, norms,
// biases, routers, learned positions.
TEST_P(ConvertedFamily, F16KeepsNormsBiasesAndRoutersF32) {
  const std::string family = GetParam();
  gguf::File f = gguf::File::open(converted(family, DType::F16));
  if (family != "gpt_neox") EXPECT_EQ(f.get_uint("general.file_type"), 1u);
  int matrices = 0;
  for (const gguf::TensorInfo& t : f.tensors()) {
    const std::string& n = t.name;
    bool keep_f32 = t.ne.size() == 1 || n.find("_norm") != std::string::npos ||
                    n.ends_with(".bias") || n.ends_with("ffn_gate_inp.weight") ||
                    n.ends_with("ffn_gate_inp_shexp.weight") || n == "position_embd.weight";
    EXPECT_EQ(t.type, keep_f32 ? 0u : 1u) << n;
    matrices += !keep_f32;
  }
  EXPECT_GT(matrices, 0);
}

INSTANTIATE_TEST_SUITE_P(Shared, ConvertedFamily, ::testing::ValuesIn(family_names()));

// f16 weights: every teacher-forced logit stays within 5e-3 of the largest logit. f16 rounds
// each weight by at most u = 2^-11 (4.9e-4) relative; a logit goes through about ten rounded
// matrices in series (q, k, v, attention output, the FFN's two or three per layer, two layers,
// the classifier), so errors up to ~10u are rounding; measured: 3e-4 to 2.7e-3. A mixture of
// experts adds what no rounding bound covers: where the reference's router nearly ties, the
// rounding can flip the expert choice at a position (Mixtral: one position of 48, error 2.5),
// so for those at most a tenth of the positions may exceed it. Greedy decoding gives the golden
// ids up to the first position whose golden top-2 gap is within twice that position's error,
// where an argmax may flip.
TEST_P(ConvertedFamily, F16RunsWithinItsRoundingError) {
  const std::string family = GetParam();
  ModelFile model = load_model(converted(family, DType::F16));
  FamilyGolden g = read_golden(folder(family));
  const size_t vocab = size_t(model.config.vocab_size), n = g.tokens.size();
  Session forced(model, Placement("ref"), int(n) + 1);
  std::vector<int32_t> ids(g.tokens.begin(), g.tokens.end());
  std::vector<float> logits = forced.forward(ids, true);
  ASSERT_EQ(logits.size(), g.logits.size());
  const float largest = max_abs(g.logits), tolerance = 5e-3f * largest;
  std::vector<float> error(n, 0);
  for (size_t i = 0; i < logits.size(); ++i)
    error[i / vocab] = std::max(error[i / vocab], std::fabs(logits[i] - g.logits[i]));
  size_t over = 0;
  for (float e : error) over += e > tolerance;
  const float worst = *std::max_element(error.begin(), error.end());
  if (model.config.ffn == FfnKind::Moe)
    EXPECT_LE(over, n / 10) << "worst " << worst << ", tolerance " << tolerance;
  else
    EXPECT_EQ(over, 0u) << "worst " << worst << ", tolerance " << tolerance;
  EXPECT_GT(worst, 0.0f) << "the f16 file runs bit-exact: its weights are not f16";

  Session session(model, Placement("ref"), int(n) + 1);
  GenerateOptions o;
  o.steps = int(n);
  GenerateResult r = generate(session, g.prompt, o);
  ASSERT_GE(r.token_ids.size(), n);
  size_t same = g.prompt.size();
  for (size_t p = g.prompt.size() - 1; p + 1 < n; ++p) {
    if (r.token_ids[p + 1] != g.tokens[p + 1]) {
      std::vector<float> row(g.logits.begin() + long(p * vocab),
                             g.logits.begin() + long((p + 1) * vocab));
      std::partial_sort(row.begin(), row.begin() + 2, row.end(), std::greater<float>());
      EXPECT_LE(row[0] - row[1], 2 * error[p])
          << "an argmax flipped at position " << p << " where the margin allows no flip";
      break;
    }
    ++same;
  }
  RecordProperty("f16_error_ratio", std::to_string(worst / largest));
  RecordProperty("golden_ids_kept", std::to_string(same) + "/" + std::to_string(n));
}

// Layouts only llama.cpp's files have, against the folder's tensors.
TEST(Convert, LlamaQkRowsArePermutedForAdjacentRope) {
  ModelFile hf = load_model(folder("llama"));
  gguf::File f = gguf::File::open(converted("llama", DType::F32));
  const int64_t hd = hf.config.head_dim;
  for (const char* role : {"attn_q", "attn_k"}) {
    const std::string name = std::string("blk.1.") + role + ".weight";
    Tensor a = hf.weights.at(name), b = f.tensor(name);
    ASSERT_EQ(a.shape(), b.shape());
    const int64_t cols = a.shape()[1];
    for (int64_t row = 0; row < a.shape()[0]; ++row) {
      int64_t head = row / hd, i = row % hd;
      int64_t from = head * hd + (i % 2 == 0 ? i / 2 : hd / 2 + i / 2);
      for (int64_t col = 0; col < cols; ++col)
        ASSERT_EQ(b.get_f32(row * cols + col), a.get_f32(from * cols + col)) << name << " " << row;
    }
  }
  // The other families keep rotate-half's order, and the V rows are never permuted.
  Tensor v = hf.weights.at("blk.0.attn_v.weight");
  Tensor fv = f.tensor("blk.0.attn_v.weight");
  EXPECT_EQ(std::memcmp(v.bytes(), fv.bytes(), v.nbytes()), 0);
  ModelFile qwen = load_model(folder("qwen2"));
  gguf::File fq = gguf::File::open(converted("qwen2", DType::F32));
  Tensor q = qwen.weights.at("blk.0.attn_q.weight"), fqq = fq.tensor("blk.0.attn_q.weight");
  EXPECT_EQ(std::memcmp(q.bytes(), fqq.bytes(), q.nbytes()), 0);
}

TEST(Convert, FusedStackedAndRenamedTensorsAreLlamaCpps) {
  // Phi-3: one attn_qkv and a gate+up ffn_up, as the folder has them.
  gguf::File phi3 = gguf::File::open(converted("phi3", DType::F32));
  EXPECT_NE(phi3.find_tensor("blk.0.attn_qkv.weight"), nullptr);
  EXPECT_EQ(phi3.find_tensor("blk.0.ffn_gate.weight"), nullptr);
  EXPECT_EQ(phi3.tensor("blk.0.ffn_up.weight").shape(), Shape({2 * 160, 64}));
  // Mixtral: experts stacked [experts, out, in] (ggml ne {in, out, experts}).
  gguf::File mixtral = gguf::File::open(converted("mixtral", DType::F32));
  const gguf::TensorInfo* gate = mixtral.find_tensor("blk.0.ffn_gate_exps.weight");
  ASSERT_NE(gate, nullptr);
  EXPECT_EQ(gate->ne, (std::vector<uint64_t>{64, 160, 4}));
  EXPECT_EQ(mixtral.get_uint("llama.expert_count"), 4u);
  EXPECT_EQ(mixtral.get_uint("llama.expert_used_count"), 2u);
  // Falcon's two norms: ln_attn is llama.cpp's attn_norm_2, ln_mlp its attn_norm.
  gguf::File falcon = gguf::File::open(converted("falcon", DType::F32));
  ModelFile fhf = load_model(folder("falcon"));
  Tensor ln_attn = fhf.weights.at("blk.0.attn_norm.weight");  // TapML names it by its use
  Tensor ln_mlp = fhf.weights.at("blk.0.ffn_norm.weight");
  Tensor n2 = falcon.tensor("blk.0.attn_norm_2.weight"),
         n1 = falcon.tensor("blk.0.attn_norm.weight");
  EXPECT_EQ(std::memcmp(ln_attn.bytes(), n2.bytes(), n2.nbytes()), 0);
  EXPECT_EQ(std::memcmp(ln_mlp.bytes(), n1.bytes(), n1.nbytes()), 0);
  EXPECT_EQ(falcon.find_tensor("blk.0.ffn_norm.weight"), nullptr);
  EXPECT_EQ(falcon.get_string("falcon.tensor_data_layout"), "jploski");
}

// transformers' Gemma norms multiply by (1 + w) and store w; llama.cpp's store 1 + w.
TEST(Convert, GemmaNormsAreOnePlusWeight) {
  for (const char* family : {"gemma", "gemma2", "gemma3"}) {
    gguf::File f = gguf::File::open(converted(family, DType::F32));
    safetensors::Contents st = safetensors::read(folder(family) + "/model.safetensors");
    for (auto [gguf_name, hf_name] :
         {std::pair{"blk.1.attn_norm.weight", "model.layers.1.input_layernorm.weight"},
          {"output_norm.weight", "model.norm.weight"}}) {
      const Tensor* w = st.find(hf_name);
      ASSERT_NE(w, nullptr) << hf_name;
      Tensor g = f.tensor(gguf_name);
      ASSERT_EQ(g.numel(), w->numel());
      for (int64_t i = 0; i < g.numel(); ++i)
        ASSERT_EQ(g.get_f32(i), w->get_f32(i) + 1.0f) << family << " " << gguf_name << " " << i;
    }
  }
  gguf::File g3 = gguf::File::open(converted("gemma3", DType::F32));
  safetensors::Contents st = safetensors::read(folder("gemma3") + "/model.safetensors");
  EXPECT_EQ(g3.tensor("blk.0.attn_q_norm.weight").get_f32(3),
            st.find("model.layers.0.self_attn.q_norm.weight")->get_f32(3) + 1.0f);
}

TEST(Convert, Llama31CarriesRopeFreqs) {
  gguf::File f = gguf::File::open(converted("llama31", DType::F32));
  Tensor r = f.tensor("rope_freqs.weight");
  ASSERT_EQ(r.shape(), Shape({8}));
  // head_dim 16, theta 500000, factor 8, original context 64, low 1, high 4: wavelengths
  // 2 pi 500000^(i/8); below 16 stays 1, above 64 is divided by 8, between them smoothed.
  EXPECT_EQ(r.get_f32(0), 1.0f);
  EXPECT_GT(r.get_f32(1), 1.0f);
  EXPECT_LT(r.get_f32(1), 8.0f);
  for (int i = 2; i < 8; ++i) EXPECT_EQ(r.get_f32(i), 8.0f) << i;
  gguf::File plain = gguf::File::open(converted("llama", DType::F32));
  EXPECT_EQ(plain.find_tensor("rope_freqs.weight"), nullptr);
}

// The keys TapML adds where llama.cpp has none, and only there.
TEST(Convert, TapmlKeysWhereLlamaCppCannotSayIt) {
  auto keys = [](const std::string& family) {
    std::set<std::string> out;
    gguf::File f = gguf::File::open(converted(family, DType::F32));
    for (const auto& [k, v] : f.metadata())
      if (k.rfind("tapml.", 0) == 0) out.insert(k);
    return out;
  };
  using S = std::set<std::string>;
  EXPECT_EQ(keys("mistral"), S{"tapml.attention.sliding_window"});
  EXPECT_EQ(keys("starcoder2"), S{"tapml.attention.sliding_window"});
  EXPECT_EQ(keys("gemma2"), S{"tapml.attention.scale"});
  EXPECT_EQ(keys("gpt_neox"), S{"tapml.activation.gelu"});
  EXPECT_EQ(keys("falcon"), S{"tapml.activation.gelu"});
  for (const char* plain :
       {"llama", "llama31", "mixtral", "qwen2", "qwen2_moe", "qwen3", "gemma", "gemma3", "phi3",
        "phi", "stablelm", "olmo2", "granite", "gpt2", "cohere"})
    EXPECT_EQ(keys(plain), S{}) << plain;
  gguf::File mistral = gguf::File::open(converted("mistral", DType::F32));
  EXPECT_EQ(mistral.get_uint("tapml.attention.sliding_window"), 8u);
  // Gemma 3's sliding layers (1 of 2) follow llama.cpp's own period key.
  gguf::File gemma3 = gguf::File::open(converted("gemma3", DType::F32));
  EXPECT_EQ(gemma3.get_uint("gemma3.attention.sliding_window_pattern"), 2u);
  EXPECT_EQ(gemma3.get_uint("gemma3.attention.sliding_window"), 8u);
}

// A copy of a shared family folder whose config.json `edit` changes.
std::string edited_copy(const std::string& family,
                        const std::function<void(nlohmann::json&)>& edit) {
  std::string src = folder(family);
  std::string dir = testing::temp_dir() + "/" + family;
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(src + "/model.safetensors", dir + "/model.safetensors");
  std::ifstream in(src + "/config.json");
  nlohmann::json j = nlohmann::json::parse(in);
  edit(j);
  std::ofstream(dir + "/config.json") << j.dump(1);
  return dir;
}

// TapML runs the folder and its converted file to the same logits (both on ref).
void expect_same_run(const std::string& dir, const std::string& gguf) {
  ModelFile hf = load_model(dir), g = load_model(gguf);
  EXPECT_EQ(config_difference(hf.config, g.config), "");
  std::vector<int32_t> ids;
  for (int i = 0; i < 24; ++i) ids.push_back((i * 37 + 11) % hf.config.vocab_size);
  Session a(hf, Placement("ref"), 32), b(g, Placement("ref"), 32);
  std::vector<float> la = a.forward(ids, true), lb = b.forward(ids, true);
  ASSERT_EQ(la.size(), lb.size());
  float largest = max_abs(la), worst = 0;
  for (size_t i = 0; i < la.size(); ++i) worst = std::max(worst, std::fabs(la[i] - lb[i]));
  EXPECT_LE(worst, 1e-5f * largest) << gguf;
}

// Configurations the shared folders do not have, each needing a key llama.cpp lacks (or one
// of its keys the converter does not write).
TEST(Convert, OtherConfigsKeepTapmlExact) {
  struct Case {
    std::string family, key;
    std::function<void(nlohmann::json&)> edit;
  };
  std::vector<Case> cases = {
      {"qwen2_moe", "tapml.expert_weights_norm",
       [](nlohmann::json& j) { j["norm_topk_prob"] = true; }},
      {"gemma2", "tapml.attention.sliding_window_pattern",
       [](nlohmann::json& j) {
         j["layer_types"] = {"full_attention", "sliding_attention"};
       }},
      {"gemma3", "tapml.attention.scale",
       [](nlohmann::json& j) { j["query_pre_attn_scalar"] = 32; }},
      {"phi3", "phi3.attention.sliding_window", [](nlohmann::json& j) { j["sliding_window"] = 8; }},
      {"gpt2", "tapml.attention.scale", [](nlohmann::json& j) { j["scale_attn_weights"] = false; }},
      {"mistral", "tapml.attention.sliding_window_pattern",
       [](nlohmann::json& j) {
         j["layer_types"] = {"sliding_attention", "full_attention"};
       }},
      {"gemma", "gemma.rope.freq_base",
       [](nlohmann::json& j) { j["rope_parameters"]["rope_theta"] = 20000.0; }},
  };
  for (const Case& c : cases) {
    std::string dir = edited_copy(c.family, c.edit);
    std::string out = testing::temp_dir() + "/edited.gguf";
    convert_hf_folder(dir, out, {});
    gguf::File f = gguf::File::open(out);
    EXPECT_TRUE(f.has(c.key)) << c.family << " " << c.key;
    expect_same_run(dir, out);
  }
  // Phi-3's window reads back on every layer.
  std::string phi3 = edited_copy("phi3", [](nlohmann::json& j) { j["sliding_window"] = 8; });
  std::string out = testing::temp_dir() + "/phi3.gguf";
  convert_hf_folder(phi3, out, {});
  EXPECT_EQ(load_model(out).config.window(1), 8);
}

TEST(Convert, RefusesWhatItCannotWrite) {
  std::string out = testing::temp_dir() + "/x.gguf";
  ConvertOptions o;
  o.dtype = DType::I32;
  EXPECT_THROW(convert_hf_folder(folder("llama"), out, o), UsageError);
  EXPECT_FALSE(std::filesystem::exists(out));
  o.dtype = DType::F32;
  EXPECT_THROW(convert_hf_folder(folder("llama") + "/config.json", out, o), Error);
  EXPECT_THROW(convert_hf_folder(testing::temp_dir() + "/nothing", out, o), Error);
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(Convert, ConfigDifferenceNamesTheField) {
  ModelConfig a = load_model(folder("qwen2")).config, b = a;
  EXPECT_EQ(config_difference(a, b), "");
  b.rope_base = 500000;
  EXPECT_EQ(config_difference(a, b), "layer 0 rope_base 1000000 vs 500000");
  b = a;
  b.layer_window.assign(size_t(a.n_layers), 0);
  EXPECT_EQ(config_difference(a, b), "");  // no windows, said two ways
  b.layer_window[1] = 8;
  EXPECT_EQ(config_difference(a, b), "layer 1 window 0 vs 8");
  b = a;
  b.attn_scale = 1.0 / std::sqrt(double(a.head_dim));
  EXPECT_EQ(config_difference(a, b), "");  // the default, said explicitly
}

}  // namespace
}  // namespace tapml

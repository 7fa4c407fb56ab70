// `tapml convert --dtype q8_0 | q4_k_m | ...`: llama.cpp's file types. The files load and run in
// TapML, every tensor has the type llama-quantize's recipe gives it, and its blocks are the f32
// conversion's tensor quantized by quantize_row. With the llama.cpp peer (TAPML_PEER, else
// ../peer beside the repository) llama.cpp runs the files to TapML's logits and llama-quantize
// makes the same types and the same bytes; without it those tests skip.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "format/gguf.h"
#include "format/safetensors.h"
#include "model/convert.h"
#include "model/model_file.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/shared.h"

namespace tapml {
namespace {

namespace fs = std::filesystem;
using testing::run_command;
using testing::shared_path;

std::string tapml(const std::string& args) { return testing::tapml_command(args); }
std::string q(const std::string& s) { return testing::shell_quote(s); }

std::string family(const std::string& name) { return shared_path("models/families/" + name); }

// Runs `tapml convert`; fails the test unless it succeeds.
void convert(const std::string& model, const std::string& out, const std::string& dtype) {
  auto r = run_command(
      tapml("convert --model " + q(model) + " --out " + q(out) + " --dtype " + dtype + " -q"));
  ASSERT_EQ(r.exit_code, 0) << dtype << ": " << r.err;
}

// tensor name -> dtype name ("q4_k") of a GGUF file.
std::map<std::string, std::string> tensor_types(const std::string& path) {
  gguf::File f = gguf::File::open(path);
  std::map<std::string, std::string> out;
  for (const gguf::TensorInfo& t : f.tensors())
    out[t.name] = std::string(dtype_name(f.tensor(t.name).dtype()));
  return out;
}

// A Llama folder with seeded random weights and rows of 256, which the K-quants' blocks fit
// (the shared families' rows of 64 make every K-quant fall back to a 32-element type).
std::string make_wide_llama(int layers, bool tied) {
  const std::string dir = testing::temp_dir() + "/wide";
  fs::create_directories(dir);
  const int64_t hidden = 256, ffn = 512, heads = 4, kv_heads = 2, vocab = 512, head_dim = 64;
  nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"hidden_size", hidden},
      {"intermediate_size", ffn},
      {"num_attention_heads", heads},
      {"num_key_value_heads", kv_heads},
      {"head_dim", head_dim},
      {"num_hidden_layers", layers},
      {"vocab_size", vocab},
      {"max_position_embeddings", 256},
      {"rms_norm_eps", 1e-5},
      {"hidden_act", "silu"},
      {"rope_theta", 10000.0},
      {"tie_word_embeddings", tied},
      {"attention_bias", false},
      {"mlp_bias", false},
      {"torch_dtype", "float32"},
  };
  std::ofstream(dir + "/config.json") << config.dump(1);

  std::mt19937 rng(7);
  std::vector<safetensors::Entry> entries;
  auto add = [&](const std::string& name, Shape shape, float center, float spread) {
    std::uniform_real_distribution<float> u(-spread, spread);
    std::vector<float> v(size_t(shape.numel()));
    for (float& x : v) x = center + u(rng);
    entries.push_back({name, Tensor::from_f32(shape, v)});
  };
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    add(name, Shape{rows, cols}, 0, std::sqrt(3.0f / float(cols)));
  };
  add("model.embed_tokens.weight", Shape{vocab, hidden}, 0, 1.0f);
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", Shape{hidden}, 1, 0.1f);
    matrix(p + "self_attn.q_proj.weight", heads * head_dim, hidden);
    matrix(p + "self_attn.k_proj.weight", kv_heads * head_dim, hidden);
    matrix(p + "self_attn.v_proj.weight", kv_heads * head_dim, hidden);
    matrix(p + "self_attn.o_proj.weight", hidden, heads * head_dim);
    add(p + "post_attention_layernorm.weight", Shape{hidden}, 1, 0.1f);
    matrix(p + "mlp.gate_proj.weight", ffn, hidden);
    matrix(p + "mlp.up_proj.weight", ffn, hidden);
    matrix(p + "mlp.down_proj.weight", hidden, ffn);
  }
  add("model.norm.weight", Shape{hidden}, 1, 0.1f);
  if (!tied) matrix("lm_head.weight", vocab, hidden);
  safetensors::write(dir + "/model.safetensors", entries, {{"format", "pt"}});
  return dir;
}

// Every tensor of `quantized` dequantizes to its f32 counterpart in `f32` quantized with
// quantize_row and dequantized again, bit for bit; tensors kept f32 are the same bytes.
void expect_quantized_source(const std::string& f32, const std::string& quantized) {
  gguf::File a = gguf::File::open(f32), b = gguf::File::open(quantized);
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  int blocks = 0;
  for (const gguf::TensorInfo& ti : b.tensors()) {
    Tensor src = a.tensor(ti.name), got = b.tensor(ti.name);
    ASSERT_EQ(src.dtype(), DType::F32) << ti.name;
    ASSERT_EQ(src.shape(), got.shape()) << ti.name;
    std::vector<float> want = src.to_f32();
    if (is_block(got.dtype())) {
      want = Tensor::from_f32_as(got.dtype(), src.shape(), want).to_f32();
      ++blocks;
    } else {
      ASSERT_EQ(got.dtype(), DType::F32) << ti.name;
    }
    std::vector<float> have = got.to_f32();
    ASSERT_EQ(have.size(), want.size()) << ti.name;
    EXPECT_EQ(std::memcmp(have.data(), want.data(), want.size() * sizeof(float)), 0)
        << ti.name << " (" << dtype_name(got.dtype()) << ") is not quantize_row's blocks";
  }
  EXPECT_GT(blocks, 0);
}

std::string golden_prompt(const std::string& folder) {
  std::ifstream f(folder + "/golden.json");
  nlohmann::json g = nlohmann::json::parse(f);
  std::string ids;
  for (int id : g["prompt_ids"]) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  return ids;
}

// `tapml info` reads the file and names the file type; `tapml run --backend ref` runs it.
void expect_loads_and_runs(const std::string& path, const std::string& ids, int file_type) {
  const int steps = int(std::count(ids.begin(), ids.end(), ',')) + 1 + 8;
  auto info = run_command(tapml("info --model " + q(path)));
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(gguf::File::open(path).get_uint("general.file_type"), uint64_t(file_type));
  auto run = run_command(tapml("run --model " + q(path) + " --prompt-ids " + ids + " --steps " +
                               std::to_string(steps) + " --json --backend ref"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  auto tokens = nlohmann::json::parse(run.out).at("token_ids").get<std::vector<int>>();
  EXPECT_EQ(tokens.size(), size_t(steps + 1));
}

TEST(ConvertQuantCli, Q8_0QuantizesEveryMatrix) {
  const std::string folder = family("llama"), dir = testing::temp_dir();
  convert(folder, dir + "/f32.gguf", "f32");
  convert(folder, dir + "/q8_0.gguf", "q8_0");
  expect_loads_and_runs(dir + "/q8_0.gguf", golden_prompt(folder), 7);
  for (const auto& [name, type] : tensor_types(dir + "/q8_0.gguf")) {
    const bool vector = name.find("_norm.") != std::string::npos;
    EXPECT_EQ(type, vector ? "f32" : "q8_0") << name;
  }
  expect_quantized_source(dir + "/f32.gguf", dir + "/q8_0.gguf");
  EXPECT_LT(fs::file_size(dir + "/q8_0.gguf"), fs::file_size(dir + "/f32.gguf") * 4 / 10);
}

// The family's rows are 64 wide (160 for ffn_down): q4_k and q6_k cannot block them, so
// llama.cpp's recipe falls back to q5_0 and q8_0. Two layers: more_bits marks layer 1 only.
TEST(ConvertQuantCli, Q4_K_MOnNarrowRowsFallsBackAsLlamaCppDoes) {
  const std::string folder = family("llama"), dir = testing::temp_dir();
  convert(folder, dir + "/f32.gguf", "f32");
  auto r = run_command(tapml("convert --model " + q(folder) + " --out " + q(dir + "/q4_k_m.gguf") +
                             " --dtype q4_k_m -q"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("tensor types: "), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("do not hold whole blocks"), std::string::npos) << r.err;
  expect_loads_and_runs(dir + "/q4_k_m.gguf", golden_prompt(folder), 15);
  std::map<std::string, std::string> want = {
      {"token_embd.weight", "q5_0"}, {"output.weight", "q8_0"}, {"output_norm.weight", "f32"}};
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* m : {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"})
      want[p + m + ".weight"] = "q5_0";
    want[p + "attn_v.weight"] = l == 1 ? "q8_0" : "q5_0";
    want[p + "ffn_down.weight"] = l == 1 ? "q8_0" : "q5_0";
    want[p + "attn_norm.weight"] = want[p + "ffn_norm.weight"] = "f32";
  }
  EXPECT_EQ(tensor_types(dir + "/q4_k_m.gguf"), want);
  expect_quantized_source(dir + "/f32.gguf", dir + "/q4_k_m.gguf");
}

// Rows of 256: the recipe itself. Eight layers: more_bits marks layers 0, 3, 6 and 7.
TEST(ConvertQuantCli, Q4_K_MGivesMoreBitsToVAndFfnDownInMarkedLayers) {
  const std::string folder = make_wide_llama(8, false), dir = testing::temp_dir();
  convert(folder, dir + "/f32.gguf", "f32");
  convert(folder, dir + "/q4_k_m.gguf", "q4_k_m");
  expect_loads_and_runs(dir + "/q4_k_m.gguf", "1,7,300,45", 15);
  std::map<std::string, std::string> want = {
      {"token_embd.weight", "q4_k"}, {"output.weight", "q6_k"}, {"output_norm.weight", "f32"}};
  for (int l = 0; l < 8; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const bool more = l == 0 || l == 3 || l == 6 || l == 7;
    for (const char* m : {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"})
      want[p + m + ".weight"] = "q4_k";
    want[p + "attn_v.weight"] = want[p + "ffn_down.weight"] = more ? "q6_k" : "q4_k";
    want[p + "attn_norm.weight"] = want[p + "ffn_norm.weight"] = "f32";
  }
  EXPECT_EQ(tensor_types(dir + "/q4_k_m.gguf"), want);
  expect_quantized_source(dir + "/f32.gguf", dir + "/q4_k_m.gguf");
}

// Without output.weight the token embeddings are the classifier, and get its q6_k.
TEST(ConvertQuantCli, TiedEmbeddingsGetTheClassifiersType) {
  const std::string folder = make_wide_llama(2, true), dir = testing::temp_dir();
  convert(folder, dir + "/q5_k_m.gguf", "q5_k_m");
  auto types = tensor_types(dir + "/q5_k_m.gguf");
  EXPECT_EQ(types.count("output.weight"), 0u);
  EXPECT_EQ(types["token_embd.weight"], "q6_k");
  EXPECT_EQ(types["blk.0.attn_q.weight"], "q5_k");
  EXPECT_EQ(types["blk.1.ffn_down.weight"], "q6_k");  // more_bits(1, 2)
  EXPECT_EQ(types["blk.0.ffn_down.weight"], "q5_k");
}

// A GGUF file quantizes as the folder does: the same tensors, bytes for bytes; f16 input too.
TEST(ConvertQuantCli, QuantizesAGgufFileLikeTheFolder) {
  const std::string folder = make_wide_llama(2, false), dir = testing::temp_dir();
  convert(folder, dir + "/f32.gguf", "f32");
  convert(folder, dir + "/direct.gguf", "q3_k_m");
  convert(dir + "/f32.gguf", dir + "/from_gguf.gguf", "q3_k_m");
  gguf::File a = gguf::File::open(dir + "/direct.gguf"),
             b = gguf::File::open(dir + "/from_gguf.gguf");
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (const gguf::TensorInfo& t : a.tensors()) {
    ASSERT_NE(b.find_tensor(t.name), nullptr) << t.name;
    EXPECT_EQ(b.find_tensor(t.name)->type, t.type) << t.name;
    auto x = a.tensor_bytes(t.name), y = b.tensor_bytes(t.name);
    EXPECT_TRUE(x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size()) == 0) << t.name;
  }
  EXPECT_EQ(b.get_uint("general.file_type"), 12u);
  EXPECT_EQ(b.get_string("general.architecture"), "llama");

  convert(dir + "/f32.gguf", dir + "/f16.gguf", "f16");
  convert(dir + "/f16.gguf", dir + "/q8_0.gguf", "q8_0");
  expect_loads_and_runs(dir + "/q8_0.gguf", "1,7,300,45", 7);
  // Quantized tensors are not quantized again.
  auto r = run_command(tapml("convert --model " + q(dir + "/q8_0.gguf") + " --out " +
                             q(dir + "/again.gguf") + " --dtype q4_0"));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("does not requantize"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/again.gguf"));
}

// Quantized expert stacks are refused (TapML computes with blocks in matrices only), before
// anything is written.
TEST(ConvertQuantCli, RefusesToQuantizeExpertStacks) {
  const std::string dir = testing::temp_dir();
  auto r = run_command(tapml("convert --model " + q(family("mixtral")) + " --out " +
                             q(dir + "/x.gguf") + " --dtype q4_k_m"));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("stacked experts cannot be quantized"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(ConvertQuantCli, UnknownDtypeIsAUsageErrorListingTheNames) {
  const std::string dir = testing::temp_dir();
  auto r = run_command(tapml("convert --model " + q(family("llama")) + " --out " +
                             q(dir + "/x.gguf") + " --dtype q4_k"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  for (const char* name : {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_m", "q4_k_m",
                           "q5_k_m", "q6_k", "bf16"})
    EXPECT_NE(r.err.find(name), std::string::npos) << name << " not listed: " << r.err;
  EXPECT_TRUE(fs::is_empty(dir));
}

// ---- with the llama.cpp peer --------------------------------------------------------------

std::string peer_root() {
  const char* env = std::getenv("TAPML_PEER");
  return env && *env ? std::string(env) : std::string(TAPML_SOURCE_DIR) + "/../peer";
}
std::string peer_logits() { return peer_root() + "/llama_logits"; }
std::string peer_quantize() { return peer_root() + "/build/bin/llama-quantize"; }

// Teacher-forced logits of `ids` on ref, [ids, vocab].
std::vector<float> ref_logits(const std::string& path, const std::vector<int>& ids) {
  ModelFile m = load_model(path);
  Session session(m, Placement("ref"), int(ids.size()) + 2);
  GenerateOptions o;
  o.steps = int(ids.size());
  o.keep_logits = true;
  GenerateResult r = generate(session, ids, o);
  r.logits.resize(ids.size() * size_t(m.config.vocab_size));
  return r.logits;
}

std::vector<float> read_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string bytes = ss.str();
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

// llama.cpp multiplies quantized matrices by activations it quantizes to 8 bits too, so its
// logits differ from ref's exact dequantized f32 products by more than rounding (on these
// random models up to about 5% of the largest logit; the f32 files agree to 1e-6). The bound
// is 10%, and 3 argmaxes in 4 must agree: blocks read in another layout, or the wrong type,
// give logits unrelated to ref's.
void expect_llama_cpp_agrees(const std::string& path, const std::vector<int>& ids) {
  const std::string out = testing::temp_dir() + "/peer.f32";
  std::string args;
  for (int id : ids) args += " " + std::to_string(id);
  auto r = run_command(q(peer_logits()) + " " + q(path) + " " + q(out) + args);
  ASSERT_EQ(r.exit_code, 0) << "llama.cpp cannot load " << path << ": " << r.err;
  std::vector<float> peer = read_f32(out), ours = ref_logits(path, ids);
  ASSERT_EQ(peer.size(), ours.size());
  const size_t vocab = ours.size() / ids.size();
  float largest = 0, worst = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    largest = std::max(largest, std::fabs(ours[i]));
    worst = std::max(worst, std::fabs(ours[i] - peer[i]));
  }
  size_t agree = 0;
  for (size_t p = 0; p < ids.size(); ++p) {
    auto row = [&](const std::vector<float>& v) {
      return std::max_element(v.begin() + p * vocab, v.begin() + (p + 1) * vocab) -
             (v.begin() + p * vocab);
    };
    agree += row(ours) == row(peer);
  }
  EXPECT_LT(worst / largest, 0.1) << path << ": max|diff| " << worst << " of " << largest;
  EXPECT_GE(agree * 4, ids.size() * 3)
      << path << ": argmax agrees at " << agree << " of " << ids.size();
  std::printf("[ peer ] %s: max|diff|/max|logit| %.2e, argmax %zu/%zu\n",
              fs::path(path).filename().c_str(), double(worst / largest), agree, ids.size());
}

TEST(ConvertQuantCliPeer, LlamaCppRunsTheFilesToRefsLogits) {
  if (!fs::exists(peer_logits())) GTEST_SKIP() << "no llama.cpp peer at " << peer_logits();
  const std::string folder = family("llama"), dir = testing::temp_dir();
  std::ifstream f(folder + "/golden.json");
  std::vector<int> ids = nlohmann::json::parse(f)["token_ids"].get<std::vector<int>>();
  for (const char* dtype : {"q8_0", "q4_k_m"}) {
    convert(folder, dir + "/" + dtype + ".gguf", dtype);
    expect_llama_cpp_agrees(dir + "/" + dtype + ".gguf", ids);
  }
  const std::string wide = make_wide_llama(8, false);
  for (const char* dtype : {"q8_0", "q4_k_m", "q6_k"}) {
    convert(wide, dir + "/wide_" + dtype + ".gguf", dtype);
    expect_llama_cpp_agrees(dir + "/wide_" + dtype + ".gguf",
                            {1, 7, 300, 45, 99, 2, 511, 256, 13, 88, 140, 3, 400, 77, 61, 5});
  }
}

// `q` of the f32 conversion of `folder` against llama-quantize's file of the same f32 GGUF:
// the same type and the same bytes for every tensor.
void expect_same_as_llama_quantize(const std::string& folder, const std::string& ours_type,
                                   const std::string& llama_type, const std::string& tag) {
  const std::string dir = testing::temp_dir();
  const std::string f32 = dir + "/f32.gguf", ours = dir + "/ours.gguf",
                    theirs = dir + "/llama.gguf";
  convert(folder, f32, "f32");
  convert(folder, ours, ours_type);
  auto r = run_command(q(peer_quantize()) + " " + q(f32) + " " + q(theirs) + " " + llama_type);
  ASSERT_EQ(r.exit_code, 0) << tag << ": llama-quantize failed: " << r.err;
  gguf::File a = gguf::File::open(ours), b = gguf::File::open(theirs);
  ASSERT_EQ(a.tensors().size(), b.tensors().size()) << tag;
  std::map<std::string, int> counts;
  for (const gguf::TensorInfo& t : a.tensors()) {
    const gguf::TensorInfo* u = b.find_tensor(t.name);
    ASSERT_NE(u, nullptr) << tag << ": " << t.name;
    EXPECT_EQ(gguf::tensor_type_name(t.type), gguf::tensor_type_name(u->type))
        << tag << ": " << t.name;
    auto x = a.tensor_bytes(t.name), y = b.tensor_bytes(t.name);
    EXPECT_TRUE(x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size()) == 0)
        << tag << ": " << t.name << " has other bytes";
    ++counts[std::string(gguf::tensor_type_name(t.type))];
  }
  EXPECT_EQ(a.get_uint("general.file_type"), b.get_uint("general.file_type")) << tag;
  std::string line;
  for (const auto& [type, n] : counts) line += " " + std::to_string(n) + " " + type;
  std::printf("[ peer ] %s %s: same types and bytes as llama-quantize:%s\n", tag.c_str(),
              ours_type.c_str(), line.c_str());
}

TEST(ConvertQuantCliPeer, EveryFileTypeIsLlamaQuantizes) {
  if (!fs::exists(peer_quantize())) GTEST_SKIP() << "no llama-quantize at " << peer_quantize();
  const std::string wide = make_wide_llama(8, false);
  const std::pair<const char*, const char*> types[] = {
      {"q8_0", "Q8_0"},     {"q4_0", "Q4_0"}, {"q4_1", "Q4_1"},     {"q5_0", "Q5_0"},
      {"q5_1", "Q5_1"},     {"q2_k", "Q2_K"}, {"q3_k_m", "Q3_K_M"}, {"q4_k_m", "Q4_K_M"},
      {"q5_k_m", "Q5_K_M"}, {"q6_k", "Q6_K"},
  };
  for (const auto& [ours, theirs] : types)
    expect_same_as_llama_quantize(wide, ours, theirs, "wide");
  expect_same_as_llama_quantize(make_wide_llama(2, true), "q4_k_m", "Q4_K_M", "wide-tied");
}

TEST(ConvertQuantCliPeer, EveryFamilysQ4_K_MIsLlamaQuantizes) {
  if (!fs::exists(peer_quantize())) GTEST_SKIP() << "no llama-quantize at " << peer_quantize();
  for (const std::string& name :
       {"llama", "llama31", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3", "phi",
        "gpt_neox", "stablelm", "olmo2", "starcoder2", "granite", "falcon", "gpt2", "cohere"}) {
    if (!fs::exists(family(name) + "/config.json")) continue;
    expect_same_as_llama_quantize(family(name), "q4_k_m", "Q4_K_M", name);
  }
}

// TapML does not write quantized expert stacks (it cannot run them), but the recipe's choice
// for them, where the layer comes from the name, is llama-quantize's.
TEST(ConvertQuantCliPeer, MixtureOfExpertsTypesAreLlamaQuantizes) {
  if (!fs::exists(peer_quantize())) GTEST_SKIP() << "no llama-quantize at " << peer_quantize();
  for (const std::string name : {"mixtral", "qwen2_moe"}) {
    const std::string dir = testing::temp_dir(), f32 = dir + "/f32.gguf";
    convert(family(name), f32, "f32");
    for (const auto& [type, llama_type] :
         {std::pair{FileType::Q4_K_M, "Q4_K_M"}, std::pair{FileType::Q2_K, "Q2_K"}}) {
      const std::string theirs = dir + "/" + llama_type + ".gguf";
      auto r = run_command(q(peer_quantize()) + " " + q(f32) + " " + q(theirs) + " " + llama_type);
      ASSERT_EQ(r.exit_code, 0) << name << ": llama-quantize failed: " << r.err;
      gguf::File a = gguf::File::open(f32), b = gguf::File::open(theirs);
      ModelFile m = load_model(f32);
      QuantModel model{a.get_string("general.architecture"), m.config.n_layers, m.config.n_heads,
                       m.config.n_kv_heads, m.config.n_experts};
      std::vector<QuantTensor> tensors;
      for (const gguf::TensorInfo& t : a.tensors())
        tensors.push_back({t.name, a.tensor(t.name).shape(), DType::F32});
      std::vector<DType> ours = file_type_dtypes(type, model, tensors);
      int experts = 0;
      for (size_t i = 0; i < tensors.size(); ++i) {
        const gguf::TensorInfo* u = b.find_tensor(tensors[i].name);
        ASSERT_NE(u, nullptr) << tensors[i].name;
        EXPECT_EQ(dtype_name(ours[i]), dtype_name(b.tensor(u->name).dtype()))
            << name << " " << llama_type << ": " << tensors[i].name;
        experts += tensors[i].name.find("_exps.") != std::string::npos;
      }
      EXPECT_GT(experts, 0) << name;
    }
  }
}

}  // namespace
}  // namespace tapml

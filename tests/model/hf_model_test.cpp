// Hugging Face folders: what must be refused rather than run wrong, and the config dialects.
#include "model/hf_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "format/safetensors.h"
#include "model/model_file.h"
#include "runtime/generate.h"
#include "runtime/session.h"
#include "support/shared.h"

namespace tapml {
namespace {

using nlohmann::json;
using testing::shared_path;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A copy of a shared family folder whose config.json `edit` changes.
std::string edited_copy(const std::string& family, const std::function<void(json&)>& edit) {
  std::string src = shared_path("models/families/" + family);
  std::string dir = testing::temp_dir() + "/" + family;
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(src + "/model.safetensors", dir + "/model.safetensors");
  std::ifstream in(src + "/config.json");
  json j = json::parse(in);
  edit(j);
  std::ofstream(dir + "/config.json") << j.dump(1);
  return dir;
}

HfConfig config(const json& j) { return HfConfig(std::make_shared<const json>(j), "c.json"); }

TEST(HfModel, EveryErrorIsOneLineNamingTheFolder) {
  auto check = [](const std::string& dir, const std::string& words) {
    std::string e = error_of([&] { load_model(dir); });
    EXPECT_NE(e.find(words), std::string::npos) << words << ": " << e;
    EXPECT_NE(e.find(dir), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  };
  check(edited_copy("llama", [](json& j) { j["model_type"] = "mamba"; }),
        "model_type 'mamba' is not supported");
  check(edited_copy("llama", [](json& j) { j["rope_parameters"]["rope_type"] = "yarn"; }),
        "rope_type 'yarn' is not supported");
  check(edited_copy("phi", [](json& j) { j["qk_layernorm"] = true; }), "qk_layernorm");
  check(edited_copy("cohere", [](json& j) { j["use_qk_norm"] = true; }), "use_qk_norm");
  check(edited_copy("llama", [](json& j) { j["hidden_act"] = "relu"; }), "'relu'");
  check(edited_copy("llama", [](json& j) { j["num_attention_heads"] = 5; }),
        "not a multiple of n_kv_heads");
  check(edited_copy("llama",
                    [](json& j) {
                      j["layer_types"] = {"full_attention", "chunked"};
                    }),
        "\"chunked\"");
  check(edited_copy("llama",
                    [](json& j) {
                      j["layer_types"] = {"sliding_attention", "full_attention"};
                    }),
        "has no sliding window here");
  check(edited_copy("gpt2", [](json& j) { j["scale_attn_by_inverse_layer_idx"] = true; }),
        "scale_attn_by_inverse_layer_idx");
  check(edited_copy("falcon", [](json& j) { j["alibi"] = true; }), "ALiBi");
  // A weight the config does not describe (a bias on a model that says it has none) must not
  // be ignored: llama with attention_bias false, given qwen2's biased weights.
  check(edited_copy("qwen2", [](json& j) { j["model_type"] = "llama"; }),
        "that this family does not use");
  // And one it does describe must be there.
  check(edited_copy("llama", [](json& j) { j["attention_bias"] = true; }),
        "missing tensor model.layers.0.self_attn.q_proj.bias");
}

TEST(HfModel, RopeInBothDialects) {
  // transformers 5: rope_parameters; transformers 4: rope_theta + rope_scaling.
  json v5 = {{"rope_parameters",
              {{"rope_type", "llama3"},
               {"rope_theta", 500000.0},
               {"factor", 8.0},
               {"low_freq_factor", 1.0},
               {"high_freq_factor", 4.0},
               {"original_max_position_embeddings", 64}}}};
  json v4 = {{"rope_theta", 500000.0},
             {"rope_scaling",
              {{"rope_type", "llama3"},
               {"factor", 8.0},
               {"low_freq_factor", 1.0},
               {"high_freq_factor", 4.0},
               {"original_max_position_embeddings", 64}}}};
  for (const json& j : {v5, v4}) {
    HfConfig::Rope r = config(j).rope(10000);
    EXPECT_EQ(r.theta, 500000.0);
    EXPECT_EQ(r.type, "llama3");
    EXPECT_EQ(r.factor, 8.0);
    EXPECT_EQ(r.original_context, 64);
  }
  // transformers 4 wrote "type" before "rope_type".
  EXPECT_EQ(config({{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}}).rope(1).type,
            "linear");
  EXPECT_EQ(config(json::object()).rope(1234).theta, 1234);
  // Per layer type (Gemma 3).
  json g3 = {{"rope_parameters",
              {{"full_attention", {{"rope_theta", 1e6}, {"rope_type", "default"}}},
               {"sliding_attention", {{"rope_theta", 1e4}, {"rope_type", "default"}}}}}};
  EXPECT_EQ(config(g3).rope(1, "full_attention").theta, 1e6);
  EXPECT_EQ(config(g3).rope(1, "sliding_attention").theta, 1e4);
}

TEST(HfModel, Llama3FrequencyFactorsFollowTheScalingRule) {
  HfConfig::Rope r;
  r.theta = 500000;
  r.type = "llama3";
  r.factor = 8;
  r.low_freq_factor = 1;
  r.high_freq_factor = 4;
  r.original_context = 8192;
  Tensor f = llama3_rope_freqs(r, 128);
  ASSERT_EQ(f.shape(), Shape{64});
  std::vector<float> v = f.to_f32();
  // High frequencies (short wavelengths) are kept, low ones divided by the factor, and the
  // band between is blended: the divisors rise monotonically from 1 to 8.
  EXPECT_EQ(v.front(), 1.0f);
  EXPECT_EQ(v.back(), 8.0f);
  for (size_t i = 1; i < v.size(); ++i) EXPECT_GE(v[i], v[i - 1]) << i;
  // Pair 40: wavelength 2*pi*500000^(80/128) ~ 22,000 lies in the blended band
  // (2048 .. 8192 is kept ... above 8192 divided); check it against the formula by hand.
  double inv = std::pow(500000.0, -80.0 / 128), wavelen = 2 * M_PI / inv;
  if (wavelen > 2048 && wavelen < 8192) {
    double s = (8192 / wavelen - 1) / 3;
    EXPECT_NEAR(v[40], 1 / ((1 - s) / 8 + s), 1e-5);
  } else {
    EXPECT_EQ(v[40], wavelen < 2048 ? 1.0f : 8.0f);
  }
}

// A folder whose matrices are f16 or bf16 (norms and biases too, as checkpoints store them)
// loads and runs: the norms and biases become f32, the matrices keep their dtype, and the
// greedy ids follow the f32 golden for as long as rounding cannot decide them.
TEST(HfModel, HalfPrecisionFoldersRun) {
  const std::string src = shared_path("models/families/phi");
  safetensors::Contents c = safetensors::read(src + "/model.safetensors");
  for (DType dt : {DType::F16, DType::BF16}) {
    std::string dir = testing::temp_dir() + "/phi_" + std::string(dtype_name(dt));
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(src + "/config.json", dir + "/config.json");
    std::vector<safetensors::Entry> half;
    for (const safetensors::Entry& e : c.tensors) {
      std::vector<float> v = e.tensor.to_f32();
      Tensor t(dt, e.tensor.shape());
      auto* out = reinterpret_cast<uint16_t*>(t.mutable_bytes());
      for (size_t i = 0; i < v.size(); ++i)
        out[i] = dt == DType::F16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
      half.push_back({e.name, t});
    }
    safetensors::write(dir + "/model.safetensors", half, {});
    ModelFile m = load_model(dir);
    EXPECT_EQ(m.weights.at("blk.0.attn_q.weight").dtype(), dt);
    EXPECT_EQ(m.weights.at("blk.0.attn_norm.weight").dtype(), DType::F32);
    EXPECT_EQ(m.weights.at("blk.0.attn_q.bias").dtype(), DType::F32);
    Session session(m, Placement("cpu"), 64);
    std::ifstream in(src + "/golden.json");
    json g = json::parse(in);
    GenerateOptions o;
    o.steps = 48;
    GenerateResult r = generate(session, g["prompt_ids"].get<std::vector<int>>(), o);
    std::vector<int> want = g["token_ids"].get<std::vector<int>>();
    size_t same = 0;
    while (same < want.size() && r.token_ids[same] == want[same]) ++same;
    std::printf("%s: the first %zu of %zu ids agree\n", std::string(dtype_name(dt)).c_str(), same,
                want.size());
    // f16 rounds weights by 2^-11, well inside phi's smallest golden top-2 margin; bf16's 2^-8
    // may flip a late, close step (both agree on all 48 today).
    EXPECT_GE(same, dt == DType::F16 ? want.size() : size_t(24)) << dtype_name(dt);
  }
}

}  // namespace
}  // namespace tapml

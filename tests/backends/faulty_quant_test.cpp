// The quantized-weight faults on ref: each makes the oracle fail a matmul on every block type
// it names, leaves every other type bit-identical, does exactly the misread its comment says,
// and is pinned by `migrate --strategy auto` to the one site where it is injected, on
// stories260K quantized to a legacy type and on a random model quantized to K-quants.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "backend/forwarding_backend.h"
#include "backend/host_call.h"
#include "backend/registry.h"
#include "backends/builtin.h"
#include "backends/faulty/faulty_backend.h"
#include "check/oracle.h"
#include "core/quant.h"
#include "migrate/migrate.h"
#include "model/model_file.h"
#include "report/migrate_report.h"
#include "support/shared.h"
#include "support/tiny_model.h"

// The hand-decoded weights below must round as ggml's decoder does: every product rounded
// before it is added (as core/quant.cpp compiles).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace tapml {
namespace {

// Values whose 32-element groups differ in spread and offset, as trained matrices' do, so
// that the blocks' scales and mins spread over their range (a K-quant sub-block's 6-bit scale
// and min then often differ in their top 2 bits).
std::vector<float> grouped(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> spread(0.1f, 1.0f), offset(-0.5f, 0.5f);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t g = 0; g < n; g += 32) {
    const float s = spread(gen), o = offset(gen);
    for (int64_t i = g; i < g + 32; ++i) v[size_t(i)] = o + s * normal(gen);
  }
  return v;
}

Tensor weight(DType t, int64_t N, int64_t K, uint32_t seed) {
  return Tensor::from_f32_as(t, Shape{N, K}, grouped(N * K, seed));
}

// A ref matmul's inputs: x [T, K] and the weight; 512 holds whole blocks of every type.
constexpr int64_t kT = 3, kK = 512, kN = 24;
Tensor activations(uint32_t seed) {
  return Tensor::from_f32(Shape{kT, kK}, grouped(kT * kK, seed));
}

Backend& ref() {
  static std::unique_ptr<Backend> b = open_backend("ref");
  return *b;
}

HostCallResult matmul(Backend& be, const Tensor& x, const Tensor& w,
                      const std::string& site = "blk.0.attn_q") {
  return run_host_call(be, Op::Matmul, {}, {x, w}, site);
}

// The oracle's verdict on `uri`'s matmul against ref's, with the noise floor calibrated from
// ref?acc=f32 as carving does.
Verdict judged(const std::string& uri, const Tensor& x, const Tensor& w) {
  static std::unique_ptr<Backend> plain_f32 = open_backend(kNoiseReference);
  const Tensor want = matmul(ref(), x, w).outputs[0];
  const std::vector<double> noise{measure(want, matmul(*plain_f32, x, w).outputs[0], 0).error};
  auto be = open_backend(uri);
  HostCallResult got = matmul(*be, x, w);
  return judge(TolerancePolicy{}, Op::Matmul, x.shape()[1], {&want, 1}, got.outputs,
               got.guards_intact, noise);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         std::memcmp(a.bytes(), b.bytes(), a.nbytes()) == 0;
}

struct QuantFault {
  std::string name;
  std::vector<DType> types;  // the block types it decodes wrongly
};

const std::vector<QuantFault>& quant_faults() {
  static const std::vector<QuantFault> faults = {
      {"nibble_order",
       {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K}},
      {"kquant_scale", {DType::Q4_K, DType::Q5_K}},
      {"q4_1_min_sign", {DType::Q4_1, DType::Q5_1, DType::Q2_K, DType::Q4_K, DType::Q5_K}},
      {"last_block", {std::begin(kBlockDTypes), std::end(kBlockDTypes)}},
      {"q6_k_high_bits", {DType::Q6_K}},
  };
  return faults;
}

bool names(const QuantFault& f, DType t) {
  return std::find(f.types.begin(), f.types.end(), t) != f.types.end();
}

TEST(FaultyQuant, TheOracleFailsEachFaultOnEveryTypeItNamesAndPassesRef) {
  const Tensor x = activations(1);
  for (const QuantFault& f : quant_faults()) {
    EXPECT_EQ(fault_block_types(f.name), f.types) << f.name;
    EXPECT_EQ(fault_ops(f.name), (std::vector<Op>{Op::Matmul, Op::Embedding})) << f.name;
    for (DType t : f.types) {
      const Tensor w = weight(t, kN, kK, 2);
      const std::string what = f.name + " on " + std::string(dtype_name(t));
      Verdict bad = judged("faulty:ref?fault=" + f.name, x, w);
      EXPECT_FALSE(bad.pass) << what;
      EXPECT_EQ(bad.failed, CheckKind::Numeric) << what << ": " << bad.detail;
      // Far beyond the tolerance, not a marginal miss.
      EXPECT_GT(bad.worst_ratio, 100) << what << ": " << bad.detail;
      Verdict good = judged("ref", x, w);
      EXPECT_TRUE(good.pass) << what << ": " << good.detail;
    }
  }
}

TEST(FaultyQuant, TypesAndSitesAFaultDoesNotTouchAreBitIdentical) {
  const Tensor x = activations(3);
  std::vector<DType> all{DType::F32, DType::F16, DType::BF16};
  all.insert(all.end(), std::begin(kBlockDTypes), std::end(kBlockDTypes));
  for (const QuantFault& f : quant_faults()) {
    auto be = open_backend("faulty:ref?fault=" + f.name + "&site=^blk\\.0\\.");
    for (DType t : all) {
      const Tensor w = weight(t, kN, kK, 4);
      const Tensor want = matmul(ref(), x, w).outputs[0];
      const std::string what = f.name + " on " + std::string(dtype_name(t));
      // Another site: untouched whatever the type.
      EXPECT_TRUE(same_bits(matmul(*be, x, w, "blk.1.attn_q").outputs[0], want)) << what;
      const Tensor got = matmul(*be, x, w, "blk.0.attn_q").outputs[0];
      if (names(f, t)) {
        EXPECT_FALSE(same_bits(got, want)) << what;
      } else {
        EXPECT_TRUE(same_bits(got, want)) << what;
      }
    }
  }
}

// The rows of a block-type weight, dequantized.
std::vector<float> dequantized(const Tensor& w) { return w.to_f32(); }

// ref's matmul of x with an f32 weight [N, K] holding `values`.
std::vector<float> f32_matmul(const Tensor& x, int64_t N, int64_t K, std::vector<float> values) {
  return matmul(ref(), x, Tensor::from_f32(Shape{N, K}, values)).outputs[0].to_f32();
}

std::vector<float> faulty_matmul(const std::string& fault, const Tensor& x, const Tensor& w) {
  auto be = open_backend("faulty:ref?fault=" + fault);
  return matmul(*be, x, w).outputs[0].to_f32();
}

TEST(FaultyQuant, LastBlockIsTheMatmulWithoutEachRowsLastBlock) {
  const Tensor x = activations(5);
  for (DType t : {DType::Q4_0, DType::Q8_0, DType::Q6_K}) {
    const Tensor w = weight(t, kN, kK, 6);
    std::vector<float> values = dequantized(w);
    const int64_t qk = block_elems(t);
    for (int64_t n = 0; n < kN; ++n)
      std::fill(values.begin() + n * kK + kK - qk, values.begin() + (n + 1) * kK, 0.0f);
    EXPECT_EQ(faulty_matmul("last_block", x, w), f32_matmul(x, kN, kK, values)) << dtype_name(t);
  }
  // A row of one block: nothing is left of the dot products.
  const Tensor x32 = Tensor::from_f32(Shape{2, 32}, grouped(64, 7));
  const Tensor w32 = weight(DType::Q8_0, 5, 32, 8);
  EXPECT_EQ(faulty_matmul("last_block", x32, w32), std::vector<float>(10, 0.0f));
}

TEST(FaultyQuant, NibbleOrderSwapsElementsJAndJPlus16OfQ4Blocks) {
  // Q4_0 and Q4_1 decode both nibbles with the same scale (and min), so reading them swapped
  // is exchanging elements j and j + 16 of every block.
  const Tensor x = activations(9);
  for (DType t : {DType::Q4_0, DType::Q4_1}) {
    const Tensor w = weight(t, kN, kK, 10);
    std::vector<float> values = dequantized(w);
    for (int64_t b = 0; b < kN * kK; b += 32)
      for (int64_t j = 0; j < 16; ++j) std::swap(values[size_t(b + j)], values[size_t(b + j + 16)]);
    EXPECT_EQ(faulty_matmul("nibble_order", x, w), f32_matmul(x, kN, kK, values)) << dtype_name(t);
  }
}

TEST(FaultyQuant, MinSignSubtractsTheQ4_1Min) {
  const Tensor x = activations(11);
  const Tensor w = weight(DType::Q4_1, kN, kK, 12);
  std::vector<float> values(size_t(kN * kK));
  const auto* blocks = reinterpret_cast<const uint8_t*>(w.bytes());
  for (int64_t b = 0; b < kN * kK / 32; ++b) {
    quant::BlockQ4_1 block;
    std::memcpy(&block, blocks + b * int64_t(sizeof block), sizeof block);
    const float d = f16_to_f32(block.d), m = f16_to_f32(block.m);
    for (int j = 0; j < 16; ++j) {
      values[size_t(b * 32 + j)] = float(block.qs[j] & 15) * d - m;
      values[size_t(b * 32 + j + 16)] = float(block.qs[j] >> 4) * d - m;
    }
  }
  EXPECT_EQ(faulty_matmul("q4_1_min_sign", x, w), f32_matmul(x, kN, kK, values));
}

TEST(FaultyQuant, KquantScaleTakesTheMinsTopBitsForSubBlocks4To7) {
  const Tensor x = activations(13);
  const Tensor w = weight(DType::Q4_K, kN, kK, 14);
  std::vector<float> values(size_t(kN * kK));
  const auto* blocks = reinterpret_cast<const uint8_t*>(w.bytes());
  int differing = 0;  // sub-blocks whose scale the bug changes
  for (int64_t b = 0; b < kN * kK / 256; ++b) {
    quant::BlockQ4_K block;
    std::memcpy(&block, blocks + b * int64_t(sizeof block), sizeof block);
    const uint8_t* s = block.scales;
    const float d = f16_to_f32(block.d), dmin = f16_to_f32(block.dmin);
    for (int g = 0; g < 8; ++g) {
      int sc = g < 4 ? s[g] & 63 : (s[g + 4] & 15) | (s[g] >> 6) << 4;  // s[g], not s[g - 4]
      int m = g < 4 ? s[g + 4] & 63 : (s[g + 4] >> 4) | (s[g] >> 6) << 4;
      differing += g >= 4 && (s[g] >> 6) != (s[g - 4] >> 6);
      const uint8_t* q = block.qs + 32 * (g / 2);
      for (int l = 0; l < 32; ++l) {
        const int level = g % 2 == 0 ? q[l] & 15 : q[l] >> 4;
        values[size_t(b * 256 + g * 32 + l)] = d * float(sc) * float(level) - dmin * float(m);
      }
    }
  }
  EXPECT_GT(differing, 0);
  EXPECT_EQ(faulty_matmul("kquant_scale", x, w), f32_matmul(x, kN, kK, values));
}

TEST(FaultyQuant, EmbeddingRowsDecodeWithTheSameBugAndLastBlockLeavesThemUnwritten) {
  const std::vector<int32_t> rows{0, 7, 3, 7};
  const Tensor ids = Tensor::from_i32(Shape{4}, rows);
  for (const QuantFault& f : quant_faults()) {
    auto be = open_backend("faulty:ref?fault=" + f.name);
    for (DType t : f.types) {
      const Tensor table = weight(t, 9, kK, 15);
      const Tensor want = run_host_call(ref(), Op::Embedding, {}, {table, ids}).outputs[0];
      HostCallResult got = run_host_call(*be, Op::Embedding, {}, {table, ids});
      const std::string what = f.name + " on " + std::string(dtype_name(t));
      Verdict v = judge(TolerancePolicy{}, Op::Embedding, 0, {&want, 1}, got.outputs,
                        got.guards_intact, {});
      EXPECT_FALSE(v.pass) << what;
      if (f.name == "last_block") {
        // The poison run_host_call fills outputs with survives in each row's last block.
        EXPECT_EQ(v.failed, CheckKind::NaN) << what << ": " << v.detail;
        EXPECT_EQ(v.outputs[0].metrics.unwritten, 4 * block_elems(t)) << what;
      } else {
        EXPECT_EQ(v.failed, CheckKind::Exact) << what << ": " << v.detail;
      }
    }
  }
}

// ref, counting the calls its kernels run.
std::atomic<int> g_inner_runs{0};
class CountingRef final : public ForwardingBackend {
 public:
  CountingRef() : ForwardingBackend(open_backend("ref")) {}
  void run(const OpCall& c) override {
    ++g_inner_runs;
    ForwardingBackend::run(c);
  }
};

TEST(FaultyQuant, ACallTheBugDoesNotChangeRunsOnTheInnerKernel) {
  static bool registered = false;
  if (!registered)
    register_backend("counting_ref", "ref counting its runs",
                     [](const BackendUri&) { return std::make_unique<CountingRef>(); });
  registered = true;
  // Constant blocks quantize to one level in both nibbles of every byte (Q4_0); blocks whose
  // smallest value is 0 have a min of 0 (Q4_1); a dropped block of zeros adds nothing.
  // Whether the call ran on the inner kernel; its output must then be ref's, bit for bit.
  auto on_inner = [&](const std::string& fault, const Tensor& w) {
    auto be = open_backend("faulty:counting_ref?fault=" + fault);
    const Tensor x = Tensor::from_f32(Shape{2, w.shape()[1]}, grouped(2 * w.shape()[1], 16));
    const int before = g_inner_runs;
    const Tensor got = matmul(*be, x, w).outputs[0];
    const bool inner = g_inner_runs - before == 1;
    EXPECT_EQ(inner, same_bits(got, matmul(ref(), x, w).outputs[0])) << fault;
    return inner;
  };
  std::vector<float> constant(4 * 64, 0.25f);
  EXPECT_TRUE(on_inner("nibble_order", Tensor::from_f32_as(DType::Q4_0, Shape{4, 64}, constant)));
  std::vector<float> from_zero = grouped(4 * 64, 19);
  for (size_t i = 0; i < from_zero.size(); ++i)
    from_zero[i] = i % 32 == 0 ? 0 : std::fabs(from_zero[i]);
  EXPECT_TRUE(on_inner("q4_1_min_sign", Tensor::from_f32_as(DType::Q4_1, Shape{4, 64}, from_zero)));
  std::vector<float> tail = grouped(4 * 64, 17);
  for (int64_t n = 0; n < 4; ++n)
    std::fill(tail.begin() + n * 64 + 32, tail.begin() + n * 64 + 64, 0.0f);
  EXPECT_TRUE(on_inner("last_block", Tensor::from_f32_as(DType::Q8_0, Shape{4, 64}, tail)));
  // Where the bug shows, the host computes the call.
  EXPECT_FALSE(on_inner("nibble_order", weight(DType::Q4_0, 4, 64, 18)));
  EXPECT_FALSE(on_inner("q4_1_min_sign", weight(DType::Q4_1, 4, 64, 18)));
  EXPECT_FALSE(on_inner("last_block", weight(DType::Q8_0, 4, 64, 18)));
}

// ------------------------------------------------------------------------------- migration

std::string escaped(const std::string& site) {
  std::string re = "^";
  for (char c : site) re += c == '.' ? std::string("\\.") : std::string(1, c);
  return re + "$";
}

// Every matrix of `m` whose rows hold whole blocks of `q` stored as `q` (ggml's reference
// quantizer), as llama-quantize does.
ModelFile quantized(ModelFile m, DType q) {
  for (auto& [name, t] : m.weights)
    if (t.shape().rank() == 2 && t.shape()[1] % block_elems(q) == 0)
      t = Tensor::from_f32_as(q, t.shape(), t.to_f32());
  return m;
}

struct Pin {
  std::string fault;
  DType type;
  std::string site;
  Op op;
};

// Migrates `model` from ref to `inner` with the fault at one site; the auto strategy must
// name exactly that site. Over cpu, whose quantized matmuls round the activations to 8 bits,
// this also shows the end-to-end threshold of a quantized model (calibrated on ref?acc=q8)
// keeping the fault visible. Prints the verdict as `tapml migrate` does.
void expect_pinned(const ModelFile& model, const Pin& p, std::vector<std::vector<int>> prompts,
                   int steps, const std::string& inner) {
  MigrateOptions o;
  o.target = "faulty:" + inner + "?fault=" + p.fault + "&site=" + escaped(p.site);
  o.steps = steps;
  o.prompts = std::move(prompts);
  MigrateReport r = migrate(model, o);
  const std::string what =
      p.fault + " on " + std::string(dtype_name(p.type)) + " at " + p.site + " over " + inner;
  std::string text = migrate_text(r);
  std::cout << "[ migrate  ] " << what << "\n" << text.substr(text.find('\n') + 1);
  EXPECT_EQ(r.status, "fail") << what;
  ASSERT_EQ(r.culprits.size(), 1u) << what << ": " << r.summary;
  EXPECT_EQ(r.culprits[0].site, p.site) << what << ": " << r.summary;
  EXPECT_EQ(r.culprit_ops, std::vector<Op>{p.op}) << what;
}

TEST(FaultyQuantMigrate, LegacyFaultsArePinnedOnQuantizedStories) {
  // stories260K's rows are 64 wide: only the 32-element types fit.
  const ModelFile stories = load_model(testing::shared_path("models/stories260K/stories260K.gguf"));
  const std::vector<std::vector<int>> prompt{{1, 403, 407, 261}};
  for (const Pin& p : {Pin{"nibble_order", DType::Q4_0, "blk.1.attn_v", Op::Matmul},
                       Pin{"q4_1_min_sign", DType::Q4_1, "blk.3.ffn_up", Op::Matmul},
                       Pin{"last_block", DType::Q5_0, "blk.2.attn_q", Op::Matmul},
                       Pin{"last_block", DType::Q8_0, "token_embd", Op::Embedding}}) {
    ModelFile m = quantized(stories, p.type);
    ASSERT_EQ(m.weights.at("blk.0.attn_q.weight").dtype(), p.type);
    for (const char* inner : {"ref", "cpu"}) expect_pinned(m, p, prompt, 16, inner);
  }
}

TEST(FaultyQuantMigrate, KquantFaultsArePinnedOnARandomModelOf256WideRows) {
  ModelConfig c;
  c.dim = 256, c.hidden_dim = 512, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2;
  c.vocab_size = 48, c.max_seq_len = 32;
  const ModelFile tiny = testing::make_tiny_llama(31, DType::F32, c);
  const std::vector<std::vector<int>> prompt{{1, 17, 5, 40, 9}};
  for (const Pin& p : {Pin{"kquant_scale", DType::Q4_K, "blk.1.ffn_gate", Op::Matmul},
                       Pin{"kquant_scale", DType::Q5_K, "blk.0.attn_output", Op::Matmul},
                       Pin{"q4_1_min_sign", DType::Q4_K, "blk.0.attn_k", Op::Matmul},
                       Pin{"q6_k_high_bits", DType::Q6_K, "blk.1.ffn_down", Op::Matmul}}) {
    ModelFile m = quantized(tiny, p.type);
    ASSERT_EQ(m.weights.at("blk.0.ffn_down.weight").dtype(), p.type);
    for (const char* inner : {"ref", "cpu"}) expect_pinned(m, p, prompt, 12, inner);
  }
}

// Without a fault, cpu passes the migration of a quantized model: its 8-bit activations stay
// within the threshold calibrated on ref?acc=q8, which plain f32 noise would not allow.
TEST(FaultyQuantMigrate, CpuPassesTheMigrationOfQuantizedModels) {
  ModelConfig c;
  c.dim = 256, c.hidden_dim = 512, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2;
  c.vocab_size = 48, c.max_seq_len = 32;
  for (DType d : {DType::Q4_K, DType::Q6_K, DType::Q4_0, DType::Q8_0}) {
    const ModelFile m = testing::make_tiny_llama(31, d, c);
    MigrateOptions o;
    o.target = "cpu";
    o.steps = 12;
    o.prompts = {{1, 17, 5, 40, 9}};
    MigrateReport r = migrate(m, o);
    EXPECT_EQ(r.status, "pass") << dtype_name(d) << ": " << r.summary;
    // The threshold comes from the 8-bit run: far above what f32 rounding alone makes.
    EXPECT_GT(r.noise_nmse, 1e-8) << dtype_name(d);
  }
}

}  // namespace
}  // namespace tapml

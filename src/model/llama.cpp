#include "model/llama.h"

#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "core/error.h"

namespace tapml {

namespace {

class Llama final : public Architecture {
 public:
  std::string_view name() const override { return "llama"; }

  ModelConfig config_from_gguf(const gguf::File& f) const override {
    ModelConfig c;
    c.dim = gguf_hyperparameter(f, "llama.embedding_length", std::nullopt);
    c.hidden_dim = gguf_hyperparameter(f, "llama.feed_forward_length", std::nullopt);
    c.n_layers = gguf_hyperparameter(f, "llama.block_count", std::nullopt);
    c.n_heads = gguf_hyperparameter(f, "llama.attention.head_count", std::nullopt);
    c.n_kv_heads = gguf_hyperparameter(f, "llama.attention.head_count_kv", uint64_t(c.n_heads));
    c.max_seq_len = gguf_hyperparameter(f, "llama.context_length", std::nullopt,
                                        uint64_t(std::numeric_limits<int>::max()));
    std::optional<uint64_t> even_split;
    if (c.dim % c.n_heads == 0) even_split = uint64_t(c.dim / c.n_heads);
    if (!even_split && !f.has("llama.attention.key_length"))
      throw Error(f.path() + ": llama.embedding_length " + std::to_string(c.dim) +
                  " is not divisible by llama.attention.head_count " + std::to_string(c.n_heads) +
                  " and llama.attention.key_length is missing");
    c.head_dim = gguf_hyperparameter(f, "llama.attention.key_length", even_split);
    c.rope_dim = gguf_hyperparameter(f, "llama.rope.dimension_count", uint64_t(c.head_dim));
    c.rope_base = float(f.get_float_or("llama.rope.freq_base", 10000.0));
    c.rms_eps = float(f.get_float_or("llama.attention.layer_norm_rms_epsilon", 1e-5));
    c.rope_pairing = RopePairing::Adjacent;  // llama.cpp's converter permutes q/k to match

    if (f.has("llama.vocab_size")) {
      c.vocab_size = gguf_hyperparameter(f, "llama.vocab_size", std::nullopt);
    } else if (const gguf::TensorInfo* e = f.find_tensor("token_embd.weight");
               e && e->ne.size() == 2) {
      if (e->ne[1] > (uint64_t(1) << 20))
        throw Error(f.path() + ": token_embd.weight has " + std::to_string(e->ne[1]) +
                    " rows, an absurd vocabulary size");
      c.vocab_size = int(e->ne[1]);
    } else {
      throw Error(f.path() + ": cannot tell the vocabulary size (no llama.vocab_size and no " +
                  "2-D token_embd.weight)");
    }
    c.shared_classifier = f.find_tensor("output.weight") == nullptr;
    return c;
  }

  void check(const ModelConfig& c) const override {
    auto positive = [&](const char* name, int x) {
      TAPML_REQUIRE(x > 0, std::string(name) + " " + std::to_string(x) + " must be positive");
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
    TAPML_REQUIRE(c.n_heads % c.n_kv_heads == 0, "n_heads " + std::to_string(c.n_heads) +
                                                     " is not a multiple of n_kv_heads " +
                                                     std::to_string(c.n_kv_heads));
    TAPML_REQUIRE(c.rope_dim <= c.head_dim && c.rope_dim % 2 == 0,
                  "rope_dim " + std::to_string(c.rope_dim) + " must be even and at most head_dim " +
                      std::to_string(c.head_dim));
    TAPML_REQUIRE(std::isfinite(c.rms_eps) && c.rms_eps > 0,
                  "rms_eps " + std::to_string(c.rms_eps) + " must be a positive number");
    TAPML_REQUIRE(std::isfinite(c.rope_base) && c.rope_base > 0,
                  "rope_base " + std::to_string(c.rope_base) + " must be a positive number");
  }

  std::vector<WeightSpec> weights(const ModelConfig& c) const override {
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

  // Per layer a [context, n_kv_heads*head_dim] f32 tensor for keys and one for values, in
  // that order: k of layer 0, v of layer 0, k of layer 1, ...
  std::vector<CacheSpec> cache(const ModelConfig& c, int context) const override {
    Shape shape{context, int64_t(c.n_kv_heads) * c.head_dim};
    std::vector<CacheSpec> out;
    for (int l = 0; l < c.n_layers; ++l) {
      out.push_back({"blk." + std::to_string(l) + ".k_cache", DType::F32, shape});
      out.push_back({"blk." + std::to_string(l) + ".v_cache", DType::F32, shape});
    }
    return out;
  }

  // Reads like llama2.c's forward().
  Val forward(const ModelConfig& cfg, Emitter& e, std::span<const Val> cache,
              std::span<const int32_t> tokens, int pos, bool all_logits) const override {
    const int64_t T = int64_t(tokens.size());
    TAPML_REQUIRE(T > 0, "forward: no tokens");
    TAPML_REQUIRE(cache.size() == size_t(2 * cfg.n_layers), "forward: wrong cache");
    const int64_t context = e.type(cache[0]).shape[0];
    TAPML_REQUIRE(pos >= 0 && pos + T <= context,
                  "forward: positions " + std::to_string(pos) + ".." + std::to_string(pos + T - 1) +
                      " exceed the context length " + std::to_string(context));

    std::vector<int32_t> positions(static_cast<size_t>(T));
    std::iota(positions.begin(), positions.end(), pos);
    Val ids = e.input("tokens", Tensor::from_i32(Shape{T}, tokens));
    Val pos_rows = e.input("positions", Tensor::from_i32(Shape{T}, positions));
    int32_t start = pos;
    Val pos_start = e.input("pos", Tensor::from_i32(Shape{1}, std::span(&start, 1)));

    const Attrs norm{{"eps", cfg.rms_eps}};
    auto rope_attrs = [&](int heads) {
      return Attrs{{"n_heads", heads},
                   {"head_dim", cfg.head_dim},
                   {"rope_dim", cfg.rope_dim},
                   {"base", cfg.rope_base},
                   {"pairing", double(int(cfg.rope_pairing))}};
    };
    const Attrs attn{{"n_heads", cfg.n_heads},
                     {"n_kv_heads", cfg.n_kv_heads},
                     {"head_dim", cfg.head_dim},
                     {"scale", 1.0 / std::sqrt(double(cfg.head_dim))}};
    auto one = [&](const Site& site, Op op, const Attrs& a, const std::vector<Val>& in) {
      return e.call(site, op, a, in)[0];
    };

    Val x = one({-1, "token_embd"}, Op::Embedding, {}, {e.weight("token_embd.weight"), ids});
    for (int l = 0; l < cfg.n_layers; ++l) {
      auto at = [&](const char* role) { return Site{l, role}; };
      auto w = [&](const char* role) { return e.weight(at(role).str() + ".weight"); };

      Val h = one(at("attn_norm"), Op::RmsNorm, norm, {x, w("attn_norm")});
      Val q = one(at("attn_q"), Op::Matmul, {}, {h, w("attn_q")});
      Val k = one(at("attn_k"), Op::Matmul, {}, {h, w("attn_k")});
      Val v = one(at("attn_v"), Op::Matmul, {}, {h, w("attn_v")});
      q = one(at("rope_q"), Op::Rope, rope_attrs(cfg.n_heads), {q, pos_rows});
      k = one(at("rope_k"), Op::Rope, rope_attrs(cfg.n_kv_heads), {k, pos_rows});
      auto stored = e.call(at("kv_store"), Op::KvStore, {},
                           {cache[size_t(2 * l)], cache[size_t(2 * l + 1)], k, v, pos_start});
      // Attention reads only the used prefix of the cache.
      Val keys = e.rows(stored[0], 0, pos + T), values = e.rows(stored[1], 0, pos + T);
      Val a = one(at("attn"), Op::Attention, attn, {q, keys, values});
      Val o = one(at("attn_output"), Op::Matmul, {}, {a, w("attn_output")});
      x = one(at("attn_residual"), Op::Add, {}, {x, o});

      h = one(at("ffn_norm"), Op::RmsNorm, norm, {x, w("ffn_norm")});
      Val gate = one(at("ffn_gate"), Op::Matmul, {}, {h, w("ffn_gate")});
      Val up = one(at("ffn_up"), Op::Matmul, {}, {h, w("ffn_up")});
      Val act = one(at("ffn_act"), Op::Swiglu, {}, {gate, up});
      Val down = one(at("ffn_down"), Op::Matmul, {}, {act, w("ffn_down")});
      x = one(at("ffn_residual"), Op::Add, {}, {x, down});
    }
    if (!all_logits && T > 1) x = e.rows(x, T - 1, 1);
    x = one({-1, "output_norm"}, Op::RmsNorm, norm, {x, e.weight("output_norm.weight")});
    Val classifier = e.weight(cfg.shared_classifier ? "token_embd.weight" : "output.weight");
    return one({-1, "output"}, Op::Matmul, {}, {x, classifier});
  }
};

}  // namespace

const Architecture& llama_architecture() {
  static const Llama llama;
  return llama;
}

}  // namespace tapml

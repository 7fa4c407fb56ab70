#include "model/decoder.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <optional>

#include "core/error.h"

namespace tapml {

namespace {

std::string num(double x) {
  std::string s = std::to_string(x);
  return s;
}

}  // namespace

ModelConfig Decoder::config_from_gguf(const gguf::File& f) const {
  throw Error(f.path() + ": GGUF files of the " + std::string(name()) +
              " family are not read yet; run its Hugging Face folder instead");
}

void Decoder::check(const ModelConfig& c) const {
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
  if (c.rope) positive("rope_dim", c.rope_dim);
  TAPML_REQUIRE(c.n_heads % c.n_kv_heads == 0, "n_heads " + std::to_string(c.n_heads) +
                                                   " is not a multiple of n_kv_heads " +
                                                   std::to_string(c.n_kv_heads));
  TAPML_REQUIRE(!c.rope || (c.rope_dim <= c.head_dim && c.rope_dim % 2 == 0),
                "rope_dim " + std::to_string(c.rope_dim) + " must be even and at most head_dim " +
                    std::to_string(c.head_dim));
  TAPML_REQUIRE(std::isfinite(c.norm_eps) && c.norm_eps > 0,
                "norm_eps " + num(c.norm_eps) + " must be a positive number");
  TAPML_REQUIRE(std::isfinite(c.rope_base) && c.rope_base > 0,
                "rope_base " + num(c.rope_base) + " must be a positive number");
  TAPML_REQUIRE(c.layer_window.empty() || c.layer_window.size() == size_t(c.n_layers),
                "one sliding window per layer expected");
  for (int w : c.layer_window) TAPML_REQUIRE(w >= 0, "a sliding window must not be negative");
  TAPML_REQUIRE(c.layer_rope_base.empty() || c.layer_rope_base.size() == size_t(c.n_layers),
                "one RoPE base per layer expected");
  for (float b : c.layer_rope_base)
    TAPML_REQUIRE(std::isfinite(b) && b > 0, "a RoPE base must be a positive number");
  for (double m : {c.embed_scale, c.residual_scale, c.attn_scale, c.logit_scale})
    TAPML_REQUIRE(std::isfinite(m), "multipliers must be finite");
  TAPML_REQUIRE(std::isfinite(c.attn_softcap) && c.attn_softcap >= 0 &&
                    std::isfinite(c.final_softcap) && c.final_softcap >= 0,
                "soft-caps must be finite and not negative");
  TAPML_REQUIRE(!c.post_norms || c.block == BlockKind::Sequential,
                "post norms are defined for sequential blocks only");
  TAPML_REQUIRE(c.pre_norms || c.block == BlockKind::Sequential,
                "a parallel block needs its pre-norm");
  TAPML_REQUIRE(c.pre_norms || c.post_norms, "a block needs a pre-norm or a post-norm");
  if (c.ffn == FfnKind::Moe) {
    positive("n_experts", c.n_experts);
    positive("n_experts_used", c.n_experts_used);
    positive("expert_hidden_dim", c.expert_hidden_dim);
    TAPML_REQUIRE(c.n_experts_used <= c.n_experts,
                  "n_experts_used " + std::to_string(c.n_experts_used) + " exceeds n_experts " +
                      std::to_string(c.n_experts));
  }
}

std::vector<WeightSpec> Decoder::weights(const ModelConfig& c) const {
  const int64_t D = c.dim, H = c.hidden_dim, V = c.vocab_size;
  const int64_t Q = int64_t(c.n_heads) * c.head_dim, KV = int64_t(c.n_kv_heads) * c.head_dim;
  std::vector<WeightSpec> specs{{"token_embd.weight", {V, D}}};
  if (c.learned_positions) specs.push_back({"position_embd.weight", {c.max_seq_len, D}});
  if (c.rope && c.rope_freqs) specs.push_back({"rope_freqs.weight", {c.rope_dim / 2}, true});
  auto norm = [&](std::vector<WeightSpec>& out, const std::string& name, int64_t n) {
    out.push_back({name + ".weight", {n}, true});
    if (c.norm == NormKind::Layer && c.norm_bias) out.push_back({name + ".bias", {n}, true});
  };
  auto linear = [&](std::vector<WeightSpec>& out, const std::string& name, int64_t rows,
                    int64_t cols, bool bias) {
    out.push_back({name + ".weight", {rows, cols}});
    if (bias) out.push_back({name + ".bias", {rows}, true});
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    if (c.pre_norms) norm(specs, b + "attn_norm", D);
    if (c.qkv_fused) {
      linear(specs, b + "attn_qkv", Q + 2 * KV, D, c.qkv_bias);
    } else {
      linear(specs, b + "attn_q", Q, D, c.qkv_bias);
      linear(specs, b + "attn_k", KV, D, c.qkv_bias);
      linear(specs, b + "attn_v", KV, D, c.qkv_bias);
    }
    if (c.qk_norm == QkNorm::PerHead) {
      specs.push_back({b + "attn_q_norm.weight", {c.head_dim}, true});
      specs.push_back({b + "attn_k_norm.weight", {c.head_dim}, true});
    } else if (c.qk_norm == QkNorm::Whole) {
      specs.push_back({b + "attn_q_norm.weight", {Q}, true});
      specs.push_back({b + "attn_k_norm.weight", {KV}, true});
    }
    linear(specs, b + "attn_output", D, Q, c.attn_out_bias);
    if (c.post_norms) norm(specs, b + "post_attention_norm", D);
    if ((c.pre_norms && c.block == BlockKind::Sequential) || c.second_norm)
      norm(specs, b + "ffn_norm", D);
    switch (c.ffn) {
      case FfnKind::SwiGlu:
      case FfnKind::GeGlu:
        if (c.gate_up_fused) {
          linear(specs, b + "ffn_up", 2 * H, D, c.ffn_bias);
        } else {
          linear(specs, b + "ffn_gate", H, D, c.ffn_bias);
          linear(specs, b + "ffn_up", H, D, c.ffn_bias);
        }
        linear(specs, b + "ffn_down", D, H, c.ffn_bias);
        break;
      case FfnKind::Gelu:
        linear(specs, b + "ffn_up", H, D, c.ffn_bias);
        linear(specs, b + "ffn_down", D, H, c.ffn_bias);
        break;
      case FfnKind::Moe: {
        const int64_t E = c.n_experts, EH = c.expert_hidden_dim;
        specs.push_back({b + "ffn_gate_inp.weight", {E, D}});
        specs.push_back({b + "ffn_gate_exps.weight", {E, EH, D}});
        specs.push_back({b + "ffn_up_exps.weight", {E, EH, D}});
        specs.push_back({b + "ffn_down_exps.weight", {E, D, EH}});
        if (c.shared_expert_dim) {
          const int64_t S = c.shared_expert_dim;
          if (c.shared_expert_gate) specs.push_back({b + "ffn_gate_inp_shexp.weight", {1, D}});
          specs.push_back({b + "ffn_gate_shexp.weight", {S, D}});
          specs.push_back({b + "ffn_up_shexp.weight", {S, D}});
          specs.push_back({b + "ffn_down_shexp.weight", {D, S}});
        }
        break;
      }
    }
    if (c.post_norms) norm(specs, b + "post_ffw_norm", D);
  }
  norm(specs, "output_norm", D);
  if (!c.shared_classifier) specs.push_back({"output.weight", {V, D}});
  if (c.output_bias) specs.push_back({"output.bias", {V}, true});
  return specs;
}

// Per layer a [context, n_kv_heads*head_dim] tensor of `kv` for keys and one for values, in
// that order: k of layer 0, v of layer 0, k of layer 1, ...
std::vector<CacheSpec> Decoder::cache(const ModelConfig& c, int context, DType kv) const {
  TAPML_REQUIRE_USAGE(kv == DType::F32 || kv == DType::F16,
                      "a KV cache holds f32 or f16, not " + std::string(dtype_name(kv)));
  Shape shape{context, int64_t(c.n_kv_heads) * c.head_dim};
  std::vector<CacheSpec> out;
  for (int l = 0; l < c.n_layers; ++l) {
    out.push_back({"blk." + std::to_string(l) + ".k_cache", kv, shape});
    out.push_back({"blk." + std::to_string(l) + ".v_cache", kv, shape});
  }
  return out;
}

namespace {

// The forward pass of one call, with the helpers its steps share.
class Pass {
 public:
  Pass(const ModelConfig& c, Emitter& e) : c_(c), e_(e) {}

  Val one(const Site& site, Op op, const Attrs& a, const std::vector<Val>& in) {
    return e_.call(site, op, a, in)[0];
  }
  Val weight(const std::string& name) { return e_.weight(name); }
  // The weight named after a site: "blk.3.attn_q" + ".weight". The name is built in a kept
  // buffer: a decode step asks for every weight of the model, by name.
  Val weight(const Site& site, const char* suffix) {
    name_.clear();
    site.append_to(name_);
    name_ += suffix;
    return e_.weight(name_);
  }

  // RMSNorm or LayerNorm (+ bias) of x with the weights named after the site (.weight, .bias).
  Val norm(const Site& site, Val x) {
    if (c_.norm == NormKind::Rms) return rms_norm(site, x, weight(site, ".weight"));
    Val y = one(site, Op::LayerNorm, eps_, {x, weight(site, ".weight")});
    if (!c_.norm_bias) return y;
    return one(bias_site(site), Op::Bias, {}, {y, weight(site, ".bias")});
  }
  // RMSNorm of x's rows with the model's eps.
  Val rms_norm(const Site& site, Val x, Val w) { return one(site, Op::RmsNorm, eps_, {x, w}); }
  // x w^T (+ b). `w` and `b` may be views of fused weights.
  Val linear(const Site& site, Val x, Val w, std::optional<Val> b) {
    Val y = one(site, Op::Matmul, {}, {x, w});
    return b ? one(bias_site(site), Op::Bias, {}, {y, *b}) : y;
  }
  // With the weights named after the site.
  Val linear(const Site& site, Val x, bool bias) {
    Val w = weight(site, ".weight");
    return linear(site, x, w, bias ? std::optional<Val>(weight(site, ".bias")) : std::nullopt);
  }
  Val scale(const Site& site, Val x, double s) { return one(site, Op::Scale, {{"s", s}}, {x}); }

  static Site bias_site(const Site& s) { return {s.layer, s.role + "_bias"}; }

  const ModelConfig& c_;
  Emitter& e_;
  const Attrs eps_{{"eps", c_.norm_eps}};
  std::string name_;
};

}  // namespace

Val Decoder::forward(const ModelConfig& cfg, Emitter& e, std::span<const Val> cache,
                     std::span<const int32_t> tokens, int pos, bool all_logits) const {
  const int64_t T = int64_t(tokens.size());
  TAPML_REQUIRE(T > 0, "forward: no tokens");
  TAPML_REQUIRE(cache.size() == size_t(2 * cfg.n_layers), "forward: wrong cache");
  const int64_t context = e.type(cache[0]).shape[0];
  TAPML_REQUIRE(pos >= 0 && pos + T <= context,
                "forward: positions " + std::to_string(pos) + ".." + std::to_string(pos + T - 1) +
                    " exceed the context length " + std::to_string(context));
  TAPML_REQUIRE(!cfg.learned_positions || pos + T <= cfg.max_seq_len,
                "forward: positions up to " + std::to_string(pos + T - 1) + " exceed the model's " +
                    std::to_string(cfg.max_seq_len) + " learned positions");
  Pass p(cfg, e);

  std::vector<int32_t> positions(static_cast<size_t>(T));
  std::iota(positions.begin(), positions.end(), pos);
  Val ids = e.input("tokens", Tensor::from_i32(Shape{T}, tokens));
  Val pos_rows = e.input("positions", Tensor::from_i32(Shape{T}, positions));
  int32_t start = pos;
  Val pos_start = e.input("pos", Tensor::from_i32(Shape{1}, std::span(&start, 1)));

  const int64_t Q = int64_t(cfg.n_heads) * cfg.head_dim;
  const int64_t KV = int64_t(cfg.n_kv_heads) * cfg.head_dim;
  auto rope_attrs = [&](int heads, int layer) {
    return Attrs{{"n_heads", heads},
                 {"head_dim", cfg.head_dim},
                 {"rope_dim", cfg.rope_dim},
                 {"base", cfg.base(layer)},
                 {"pairing", double(int(cfg.rope_pairing))}};
  };
  auto attn_attrs = [&](int layer) {
    Attrs a{
        {"n_heads", cfg.n_heads},
        {"n_kv_heads", cfg.n_kv_heads},
        {"head_dim", cfg.head_dim},
        {"scale", cfg.attn_scale != 0 ? cfg.attn_scale : 1.0 / std::sqrt(double(cfg.head_dim))}};
    if (cfg.window(layer) > 0) a.set("window", cfg.window(layer));
    if (cfg.attn_softcap > 0) a.set("softcap", cfg.attn_softcap);
    return a;
  };
  std::vector<Val> rope_in_extra;
  if (cfg.rope && cfg.rope_freqs) rope_in_extra.push_back(e.weight("rope_freqs.weight"));

  Val x = p.one({-1, "token_embd"}, Op::Embedding, {}, {e.weight("token_embd.weight"), ids});
  if (cfg.learned_positions) {
    Val pe = p.one({-1, "position_embd"}, Op::Embedding, {},
                   {e.weight("position_embd.weight"), pos_rows});
    x = p.one({-1, "position_add"}, Op::Add, {}, {x, pe});
  }
  if (cfg.embed_scale != 0) x = p.scale({-1, "token_embd_scale"}, x, cfg.embed_scale);

  for (int l = 0; l < cfg.n_layers; ++l) {
    auto at = [&](const std::string& role) { return Site{l, role}; };

    // Attention on h.
    auto attention = [&](Val h) {
      Val q, k, v;
      if (cfg.qkv_fused) {
        Val w = p.weight(at("attn_qkv"), ".weight");
        std::optional<Val> b;
        if (cfg.qkv_bias) b = p.weight(at("attn_qkv"), ".bias");
        auto part = [&](const char* role, int64_t first, int64_t n) {
          return p.linear(at(role), h, e.rows(w, first, n),
                          b ? std::optional<Val>(e.rows(*b, first, n)) : std::nullopt);
        };
        q = part("attn_q", 0, Q);
        k = part("attn_k", Q, KV);
        v = part("attn_v", Q + KV, KV);
      } else {
        q = p.linear(at("attn_q"), h, cfg.qkv_bias);
        k = p.linear(at("attn_k"), h, cfg.qkv_bias);
        v = p.linear(at("attn_v"), h, cfg.qkv_bias);
      }
      if (cfg.qk_norm != QkNorm::None) {
        auto qk = [&](Val t, const char* role, int heads) {
          Val w = p.weight(at(role), ".weight");
          if (cfg.qk_norm == QkNorm::Whole) return p.rms_norm(at(role), t, w);
          Val per_head = e.reshape(t, Shape{T * heads, cfg.head_dim});
          Val y = p.rms_norm(at(role), per_head, w);
          return e.reshape(y, Shape{T, int64_t(heads) * cfg.head_dim});
        };
        q = qk(q, "attn_q_norm", cfg.n_heads);
        k = qk(k, "attn_k_norm", cfg.n_kv_heads);
      }
      if (cfg.rope) {
        std::vector<Val> qin{q, pos_rows}, kin{k, pos_rows};
        qin.insert(qin.end(), rope_in_extra.begin(), rope_in_extra.end());
        kin.insert(kin.end(), rope_in_extra.begin(), rope_in_extra.end());
        q = p.one(at("rope_q"), Op::Rope, rope_attrs(cfg.n_heads, l), qin);
        k = p.one(at("rope_k"), Op::Rope, rope_attrs(cfg.n_kv_heads, l), kin);
      }
      auto stored = e.call(at("kv_store"), Op::KvStore, {},
                           {cache[size_t(2 * l)], cache[size_t(2 * l + 1)], k, v, pos_start});
      // Attention reads only the used prefix of the cache.
      Val keys = e.rows(stored[0], 0, pos + T), values = e.rows(stored[1], 0, pos + T);
      Val a = p.one(at("attn"), Op::Attention, attn_attrs(l), {q, keys, values});
      return p.linear(at("attn_output"), a, cfg.attn_out_bias);
    };

    // The feed-forward part on h.
    auto ffn = [&](Val h) {
      switch (cfg.ffn) {
        case FfnKind::SwiGlu:
        case FfnKind::GeGlu: {
          Val gate, up;
          if (cfg.gate_up_fused) {
            const int64_t H = cfg.hidden_dim;
            Val w = p.weight(at("ffn_up"), ".weight");
            std::optional<Val> b;
            if (cfg.ffn_bias) b = p.weight(at("ffn_up"), ".bias");
            auto part = [&](const char* role, int64_t first) {
              return p.linear(at(role), h, e.rows(w, first, H),
                              b ? std::optional<Val>(e.rows(*b, first, H)) : std::nullopt);
            };
            gate = part("ffn_gate", 0);
            up = part("ffn_up", H);
          } else {
            gate = p.linear(at("ffn_gate"), h, cfg.ffn_bias);
            up = p.linear(at("ffn_up"), h, cfg.ffn_bias);
          }
          Val act;
          if (cfg.ffn == FfnKind::SwiGlu) {
            act = p.one(at("ffn_act"), Op::Swiglu, {}, {gate, up});
          } else {
            Val g = p.one(at("ffn_act"), Op::Gelu, {{"approx", cfg.gelu_approx}}, {gate});
            act = p.one(at("ffn_gated"), Op::Mul, {}, {g, up});
          }
          return p.linear(at("ffn_down"), act, cfg.ffn_bias);
        }
        case FfnKind::Gelu: {
          Val up = p.linear(at("ffn_up"), h, cfg.ffn_bias);
          Val act = p.one(at("ffn_act"), Op::Gelu, {{"approx", cfg.gelu_approx}}, {up});
          return p.linear(at("ffn_down"), act, cfg.ffn_bias);
        }
        case FfnKind::Moe: {
          Val logits = p.linear(at("ffn_gate_inp"), h, false);
          Val route =
              p.one(at("ffn_route"), Op::MoeRoute,
                    {{"k", cfg.n_experts_used}, {"norm", cfg.experts_norm ? 1 : 0}}, {logits});
          Val out = p.one(
              at("ffn_moe"), Op::MoeFfn, {},
              {h, route, p.weight(at("ffn_gate_exps"), ".weight"),
               p.weight(at("ffn_up_exps"), ".weight"), p.weight(at("ffn_down_exps"), ".weight")});
          if (!cfg.shared_expert_dim) return out;
          Val g = p.linear(at("ffn_gate_shexp"), h, false);
          Val u = p.linear(at("ffn_up_shexp"), h, false);
          Val s = p.one(at("ffn_act_shexp"), Op::Swiglu, {}, {g, u});
          s = p.linear(at("ffn_down_shexp"), s, false);
          if (cfg.shared_expert_gate) {
            Val gl = p.linear(at("ffn_gate_inp_shexp"), h, false);
            s = p.one(at("ffn_shexp_gate"), Op::SigmoidGate, {}, {s, gl});
          }
          return p.one(at("ffn_shexp_add"), Op::Add, {}, {out, s});
        }
      }
      throw Error("forward: unknown feed-forward kind");
    };

    auto residual = [&](const char* role, Val base, Val part) {
      if (cfg.residual_scale != 0)
        part = p.scale(at(std::string(role) + "_scale"), part, cfg.residual_scale);
      return p.one(at(role), Op::Add, {}, {base, part});
    };

    if (cfg.block == BlockKind::Parallel) {
      Val h = p.norm(at("attn_norm"), x);
      Val a = attention(h);
      Val h2 = cfg.second_norm ? p.norm(at("ffn_norm"), x) : h;
      Val f = ffn(h2);
      x = residual("attn_residual", x, a);
      x = residual("ffn_residual", x, f);
    } else {
      Val h = cfg.pre_norms ? p.norm(at("attn_norm"), x) : x;
      Val a = attention(h);
      if (cfg.post_norms) a = p.norm(at("post_attention_norm"), a);
      x = residual("attn_residual", x, a);
      h = cfg.pre_norms ? p.norm(at("ffn_norm"), x) : x;
      Val f = ffn(h);
      if (cfg.post_norms) f = p.norm(at("post_ffw_norm"), f);
      x = residual("ffn_residual", x, f);
    }
  }
  if (!all_logits && T > 1) x = e.rows(x, T - 1, 1);
  x = p.norm({-1, "output_norm"}, x);
  Val classifier = e.weight(cfg.shared_classifier ? "token_embd.weight" : "output.weight");
  Val logits =
      p.linear({-1, "output"}, x, classifier,
               cfg.output_bias ? std::optional<Val>(e.weight("output.bias")) : std::nullopt);
  if (cfg.logit_scale != 0) logits = p.scale({-1, "output_scale"}, logits, cfg.logit_scale);
  if (cfg.final_softcap > 0)
    logits = p.one({-1, "output_softcap"}, Op::Softcap, {{"cap", cfg.final_softcap}}, {logits});
  return logits;
}

HfNames llama_hf_names() {
  const std::string L = "model.layers.{}.";
  HfNames n{{"token_embd.weight", "model.embed_tokens.weight"},
            {"output_norm.weight", "model.norm.weight"},
            {"output_norm.bias", "model.norm.bias"},
            {"output.weight", "lm_head.weight"},
            {"output.bias", "lm_head.bias"}};
  auto both = [&](const std::string& gguf, const std::string& hf) {
    n[gguf + ".weight"] = L + hf + ".weight";
    n[gguf + ".bias"] = L + hf + ".bias";
  };
  both("attn_norm", "input_layernorm");
  both("attn_q", "self_attn.q_proj");
  both("attn_k", "self_attn.k_proj");
  both("attn_v", "self_attn.v_proj");
  both("attn_output", "self_attn.o_proj");
  both("attn_q_norm", "self_attn.q_norm");
  both("attn_k_norm", "self_attn.k_norm");
  both("ffn_norm", "post_attention_layernorm");
  both("ffn_gate", "mlp.gate_proj");
  both("ffn_up", "mlp.up_proj");
  both("ffn_down", "mlp.down_proj");
  return n;
}

std::map<std::string, Tensor> Decoder::load_hf(const ModelConfig& c, const HfConfig& h,
                                               HfWeights& w, const HfNames& names,
                                               std::map<std::string, Tensor> out, float norm_offset,
                                               std::vector<std::string> ignorable) const {
  if (c.rope && c.rope_freqs && !out.count("rope_freqs.weight"))
    out["rope_freqs.weight"] = llama3_rope_freqs(h.rope(c.rope_base), c.rope_dim);
  for (const WeightSpec& spec : weights(c)) {
    if (out.count(spec.name)) continue;
    // "blk.N.ROLE.weight" -> "ROLE.weight" and layer N.
    std::string key = spec.name, layer;
    if (key.rfind("blk.", 0) == 0) {
      size_t dot = key.find('.', 4);
      layer = key.substr(4, dot - 4);
      key = key.substr(dot + 1);
    }
    auto it = names.find(key);
    TAPML_REQUIRE(it != names.end(), std::string(name()) + ": no Hugging Face name for " + key);
    std::string hf = it->second;
    if (size_t brace = hf.find("{}"); brace != std::string::npos) hf.replace(brace, 2, layer);
    bool is_norm = key.size() > 11 && key.compare(key.size() - 11, 11, "norm.weight") == 0;
    out[spec.name] = spec.norm ? w.take_f32(hf, is_norm ? norm_offset : 0) : w.take(hf);
  }
  if (c.shared_classifier) ignorable.push_back("lm_head.weight");
  ignorable.push_back("rotary_emb.inv_freq");
  w.finish(ignorable);
  return out;
}

std::vector<std::string> decoder_features(const ModelConfig& c) {
  std::vector<std::string> f;
  auto g = [](double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", x);
    return std::string(buf);
  };
  if (c.norm == NormKind::Layer) f.push_back(c.norm_bias ? "layernorm with bias" : "layernorm");
  if (c.block == BlockKind::Parallel)
    f.push_back(c.second_norm ? "parallel attention and ffn, a norm each"
                              : "parallel attention and ffn");
  if (!c.pre_norms) f.push_back("no pre-norms");
  if (c.post_norms) f.push_back("post-norms");
  const char* gelu = c.gelu_approx ? "gelu (tanh)" : "gelu (erf)";
  if (c.ffn == FfnKind::GeGlu) f.push_back(std::string("geglu, ") + gelu);
  if (c.ffn == FfnKind::Gelu) f.push_back(std::string("mlp with ") + gelu);
  if (c.ffn == FfnKind::Moe)
    f.push_back("mixture of " + std::to_string(c.n_experts) + " experts, top " +
                std::to_string(c.n_experts_used) + (c.experts_norm ? " renormalized" : "") +
                (c.shared_expert_dim ? ", shared expert" : "") +
                (c.shared_expert_gate ? " with sigmoid gate" : ""));
  if (c.qkv_fused) f.push_back("fused qkv");
  if (c.gate_up_fused) f.push_back("fused gate/up");
  std::string biases;
  for (auto [on, name] : {std::pair{c.qkv_bias, "qkv"},
                          {c.attn_out_bias, "attn_output"},
                          {c.ffn_bias, "ffn"},
                          {c.output_bias, "output"}})
    if (on) biases += (biases.empty() ? "" : ", ") + std::string(name);
  if (!biases.empty()) f.push_back("biases on " + biases);
  if (c.qk_norm == QkNorm::PerHead) f.push_back("q/k norms per head");
  if (c.qk_norm == QkNorm::Whole) f.push_back("q/k norms over the projection");
  if (!c.rope) f.push_back("no rope");
  if (c.rope && c.rope_dim < c.head_dim)
    f.push_back("partial rotary " + std::to_string(c.rope_dim) + " of " +
                std::to_string(c.head_dim));
  if (c.rope && c.rope_freqs) f.push_back("rope frequency factors");
  if (c.learned_positions) f.push_back("learned positions");
  std::string windows;
  for (int l = 0; l < c.n_layers; ++l)
    if (c.window(l) > 0)
      windows +=
          (windows.empty() ? "" : ", ") + std::to_string(l) + ":" + std::to_string(c.window(l));
  if (!windows.empty()) f.push_back("sliding windows (layer:size) " + windows);
  if (!c.layer_rope_base.empty()) {
    std::string bases;
    for (float b : c.layer_rope_base) bases += (bases.empty() ? "" : ", ") + g(b);
    f.push_back("rope base per layer " + bases);
  }
  for (auto [x, name] : {std::pair{c.embed_scale, "embedding x"},
                         {c.residual_scale, "residual x"},
                         {c.attn_scale, "attention scale"},
                         {c.logit_scale, "logits x"},
                         {c.attn_softcap, "attention softcap"},
                         {c.final_softcap, "logit softcap"}})
    if (x != 0) f.push_back(std::string(name) + " " + g(x));
  return f;
}

ModelConfig hf_common_config(const HfConfig& h, bool tie_default) {
  ModelConfig c;
  c.dim = h.integer("hidden_size", std::nullopt);
  c.n_layers = h.integer("num_hidden_layers", std::nullopt, 4096);
  c.n_heads = h.integer("num_attention_heads", std::nullopt, 65536);
  c.n_kv_heads = h.integer("num_key_value_heads", c.n_heads, 65536);
  c.vocab_size = h.integer("vocab_size", std::nullopt, 1 << 24);
  c.max_seq_len = h.integer("max_position_embeddings", 2048, 1 << 24);
  if (h.has("intermediate_size")) c.hidden_dim = h.integer("intermediate_size", std::nullopt);
  if (h.has("head_dim")) {
    c.head_dim = h.integer("head_dim", std::nullopt, 65536);
  } else {
    if (c.dim % c.n_heads != 0)
      h.fail("hidden_size " + std::to_string(c.dim) + " is not divisible by num_attention_heads " +
             std::to_string(c.n_heads) + " and head_dim is missing");
    c.head_dim = c.dim / c.n_heads;
  }
  c.rope_dim = c.head_dim;
  c.shared_classifier = h.flag("tie_word_embeddings", tie_default);
  return c;
}

ModelConfig hf_llama_like_config(const HfConfig& h, bool tie_default, const char* eps_key,
                                 double eps_default, double default_theta) {
  ModelConfig c = hf_common_config(h, tie_default);
  c.hidden_dim = h.integer("intermediate_size", std::nullopt);
  hf_require_silu(h, "hidden_act");
  c.norm_eps = float(h.number(eps_key, eps_default));
  c.qkv_bias = c.attn_out_bias = h.flag("attention_bias", false);
  c.ffn_bias = h.flag("mlp_bias", false);
  hf_apply_rope(c, h.rope(default_theta));
  c.rope_pairing = RopePairing::NeoX;
  return c;
}

int hf_gelu_approx(const HfConfig& h, const std::string& key) {
  std::string act = h.text(key, std::nullopt);
  if (act == "gelu") return 0;
  if (act == "gelu_pytorch_tanh" || act == "gelu_new" || act == "gelu_fast") return 1;
  h.fail("'" + key + "' = '" + act +
         "' is not supported here (supported: gelu, gelu_new, gelu_pytorch_tanh, gelu_fast)");
}

void hf_require_silu(const HfConfig& h, const std::string& key) {
  std::string act = h.text(key, "silu");
  if (act != "silu" && act != "swish")
    h.fail("'" + key + "' = '" + act + "' is not supported here (supported: silu)");
}

void hf_stack_experts(const ModelConfig& c, HfWeights& w, int layer, const std::string& prefix,
                      const char* gate, const char* up, const char* down,
                      std::map<std::string, Tensor>& out) {
  const std::string b = "blk." + std::to_string(layer) + ".";
  for (auto [gguf, hf] :
       {std::pair{"ffn_gate_exps", gate}, {"ffn_up_exps", up}, {"ffn_down_exps", down}}) {
    std::vector<std::string> names;
    for (int e = 0; e < c.n_experts; ++e)
      names.push_back(prefix + "experts." + std::to_string(e) + "." + hf + ".weight");
    out[b + gguf + ".weight"] = w.take_stacked(names);
  }
}

void hf_apply_rope(ModelConfig& c, const HfConfig::Rope& rope) {
  c.rope_base = float(rope.theta);
  if (rope.partial_rotary_factor) {
    double f = *rope.partial_rotary_factor;
    if (!(f > 0 && f <= 1)) throw Error("partial_rotary_factor must be in (0, 1]");
    c.rope_dim = int(double(c.head_dim) * f);
    c.rope_dim -= c.rope_dim % 2;
  }
  c.rope_freqs = rope.type != "default";
}

void hf_windows(ModelConfig& c, const HfConfig& h, bool every_layer_if_no_types) {
  if (!h.has("sliding_window")) return;
  int w = h.count("sliding_window", 0);
  if (w == 0) return;
  std::vector<std::string> types = h.layer_types(c.n_layers);
  if (types.empty() && !every_layer_if_no_types) return;
  c.layer_window.assign(size_t(c.n_layers), 0);
  for (int l = 0; l < c.n_layers; ++l)
    if (types.empty() || types[size_t(l)] == "sliding_attention") c.layer_window[size_t(l)] = w;
}

}  // namespace tapml

namespace tapml {

// ---- GGUF files as llama.cpp reads them ----

ModelConfig gguf_common_config(const gguf::File& f, const std::string& arch) {
  auto key = [&](const char* k) { return arch + "." + k; };
  ModelConfig c;
  c.dim = gguf_hyperparameter(f, key("embedding_length"), std::nullopt);
  c.hidden_dim = gguf_hyperparameter(f, key("feed_forward_length"), std::nullopt);
  c.n_layers = gguf_hyperparameter(f, key("block_count"), std::nullopt);
  c.n_heads = gguf_hyperparameter(f, key("attention.head_count"), std::nullopt);
  c.n_kv_heads = gguf_hyperparameter(f, key("attention.head_count_kv"), uint64_t(c.n_heads));
  c.max_seq_len = gguf_hyperparameter(f, key("context_length"), std::nullopt,
                                      uint64_t(std::numeric_limits<int>::max()));
  std::optional<uint64_t> even_split;
  if (c.dim % c.n_heads == 0) even_split = uint64_t(c.dim / c.n_heads);
  if (!even_split && !f.has(key("attention.key_length")))
    throw Error(f.path() + ": " + key("embedding_length") + " " + std::to_string(c.dim) +
                " is not divisible by " + key("attention.head_count") + " " +
                std::to_string(c.n_heads) + " and " + key("attention.key_length") + " is missing");
  c.head_dim = gguf_hyperparameter(f, key("attention.key_length"), even_split);
  c.rope_dim = gguf_hyperparameter(f, key("rope.dimension_count"), uint64_t(c.head_dim));
  c.rope_base = float(f.get_float_or(key("rope.freq_base"), 10000.0));

  if (f.has(key("vocab_size"))) {
    c.vocab_size = gguf_hyperparameter(f, key("vocab_size"), std::nullopt, 1 << 24);
  } else if (f.has("tokenizer.ggml.tokens")) {
    size_t n = f.get_array("tokenizer.ggml.tokens").size();
    if (n == 0 || n > (size_t(1) << 24))
      throw Error(f.path() + ": tokenizer.ggml.tokens has " + std::to_string(n) +
                  " tokens, an absurd vocabulary size");
    c.vocab_size = int(n);
  } else if (const gguf::TensorInfo* e = f.find_tensor("token_embd.weight");
             e && e->ne.size() == 2) {
    if (e->ne[1] > (uint64_t(1) << 20))
      throw Error(f.path() + ": token_embd.weight has " + std::to_string(e->ne[1]) +
                  " rows, an absurd vocabulary size");
    c.vocab_size = int(e->ne[1]);
  } else {
    throw Error(f.path() + ": cannot tell the vocabulary size (no " + key("vocab_size") +
                ", no tokenizer.ggml.tokens and no 2-D token_embd.weight)");
  }
  c.shared_classifier = f.find_tensor("output.weight") == nullptr;
  // Biases are what the file holds: llama.cpp's loaders take them where present.
  c.qkv_bias = gguf_block_has(f, "attn_q.bias") || gguf_block_has(f, "attn_qkv.bias");
  c.attn_out_bias = gguf_block_has(f, "attn_output.bias");
  c.ffn_bias = gguf_block_has(f, "ffn_up.bias");
  c.output_bias = f.find_tensor("output.bias") != nullptr;
  if (f.has(key("expert_count")) && f.get_uint(key("expert_count")) > 0) {
    c.n_experts = gguf_hyperparameter(f, key("expert_count"), std::nullopt, 4096);
    c.n_experts_used = gguf_hyperparameter(f, key("expert_used_count"), std::nullopt, 4096);
  }
  return c;
}

bool gguf_block_has(const gguf::File& f, const std::string& role) {
  return f.find_tensor("blk.0." + role) != nullptr;
}

float gguf_rms_eps(const gguf::File& f, const std::string& arch) {
  return float(f.get_float_or(arch + ".attention.layer_norm_rms_epsilon", 1e-5));
}

float gguf_layer_norm_eps(const gguf::File& f, const std::string& arch) {
  return float(f.get_float_or(arch + ".attention.layer_norm_epsilon", 1e-5));
}

int gguf_gelu_approx(const gguf::File& f) {
  std::string gelu = f.get_string_or("tapml.activation.gelu", "tanh");
  if (gelu == "erf") return 0;
  if (gelu == "tanh") return 1;
  throw Error(f.path() + ": tapml.activation.gelu = '" + gelu + "' (expected erf or tanh)");
}

namespace {

// tapml.attention.sliding_window_pattern, one flag per layer; empty when absent.
std::vector<bool> tapml_window_pattern(const gguf::File& f, int n_layers) {
  const char* key = "tapml.attention.sliding_window_pattern";
  if (!f.has(key)) return {};
  const gguf::Array& a = f.get_array(key);
  if (a.size() != size_t(n_layers))
    throw Error(f.path() + ": " + key + " has " + std::to_string(a.size()) + " entries for " +
                std::to_string(n_layers) + " layers");
  std::vector<bool> out;
  for (const gguf::Value& v : a) {
    const bool* b = std::get_if<bool>(&v.v);
    if (!b) throw Error(f.path() + ": " + key + " must be an array of BOOL");
    out.push_back(*b);
  }
  return out;
}

int window_size(const gguf::File& f, const std::string& key) {
  uint64_t w = f.get_uint(key);
  if (w > (uint64_t(1) << 30)) throw Error(f.path() + ": " + key + " is out of range");
  return int(w);
}

}  // namespace

void gguf_tapml_windows(ModelConfig& c, const gguf::File& f) {
  if (!f.has("tapml.attention.sliding_window")) return;
  int w = window_size(f, "tapml.attention.sliding_window");
  if (w == 0) return;
  std::vector<bool> sliding = tapml_window_pattern(f, c.n_layers);
  c.layer_window.assign(size_t(c.n_layers), 0);
  for (int l = 0; l < c.n_layers; ++l)
    if (sliding.empty() || sliding[size_t(l)]) c.layer_window[size_t(l)] = w;
}

void gguf_periodic_windows(ModelConfig& c, const gguf::File& f, const std::string& arch, int window,
                           int period) {
  if (window <= 0) return;
  std::vector<bool> sliding = tapml_window_pattern(f, c.n_layers);
  const std::string key = arch + ".attention.sliding_window_pattern";
  // llama.cpp reads the period as a scalar and passes over an array.
  if (const gguf::Value* v = f.find(key); v && v->type != gguf::ValueType::ARRAY) {
    uint64_t p = f.get_uint(key);
    if (p > uint64_t(c.n_layers) + 1) p = uint64_t(c.n_layers) + 1;  // the same as no dense layer
    period = int(p);
  }
  c.layer_window.assign(size_t(c.n_layers), 0);
  for (int l = 0; l < c.n_layers; ++l) {
    bool slides = sliding.empty() ? (period == 0 || l % period < period - 1) : sliding[size_t(l)];
    if (slides) c.layer_window[size_t(l)] = window;
  }
}

double gguf_attention_scale(const gguf::File& f, double fallback) {
  if (!f.has("tapml.attention.scale")) return fallback;
  double s = f.get_float("tapml.attention.scale");
  if (!std::isfinite(s) || s <= 0)
    throw Error(f.path() + ": tapml.attention.scale must be a positive number");
  return s;
}

// ---- Writing them, as llama.cpp's converter does ----

namespace {

// The first of `keys` that config.json holds (the converter's find_hparam), or "".
std::string first_present(const HfConfig& h, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (h.has(k)) return k;
  return "";
}

}  // namespace

void gguf_text_model_keys(GgufKeys& k, const ModelConfig& c, const HfConfig& h,
                          bool head_dim_keys) {
  k.u32("block_count", c.n_layers);
  if (!first_present(h, {"max_position_embeddings", "n_ctx", "n_positions", "max_length",
                         "max_sequence_length", "model_max_length"})
           .empty())
    k.u32("context_length", c.max_seq_len);
  k.u32("embedding_length", c.dim);
  if (std::string ff =
          first_present(h, {"prefix_dense_intermediate_size", "dense_intermediate_size",
                            "intermediate_size", "n_inner", "hidden_dim"});
      !ff.empty())
    k.u32("feed_forward_length", h.integer(ff, std::nullopt));
  k.u32("attention.head_count", c.n_heads);
  if (!first_present(h, {"num_key_value_heads", "n_kv_heads"}).empty())
    k.u32("attention.head_count_kv", c.n_kv_heads);
  if (c.rope) {
    HfConfig::Rope r = h.rope(c.rope_base, "full_attention");
    if (r.type == "linear") {
      k.text("rope.scaling.type", "linear");
      k.f32("rope.scaling.factor", r.factor);
    }
    k.f32("rope.freq_base", c.rope_base);
    for (int l = 0; l < c.n_layers && !c.layer_rope_base.empty(); ++l)
      if (c.window(l) > 0) {
        k.f32("rope.freq_base_swa", c.base(l));
        break;
      }
  }
  if (std::string e = first_present(h, {"rms_norm_eps", "norm_eps"}); !e.empty())
    k.f32("attention.layer_norm_rms_epsilon", h.number(e, std::nullopt));
  if (std::string e = first_present(h, {"layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"});
      !e.empty())
    k.f32("attention.layer_norm_epsilon", h.number(e, std::nullopt));
  if (std::string e = first_present(h, {"num_local_experts", "num_experts", "n_routed_experts"});
      !e.empty())
    k.u32("expert_count", h.count(e, std::nullopt));
  if (std::string e =
          first_present(h, {"num_experts_per_tok", "num_experts_per_token", "top_k_experts"});
      !e.empty())
    k.u32("expert_used_count", h.count(e, std::nullopt));
  if (head_dim_keys && h.has("head_dim")) {
    k.u32("attention.key_length", c.head_dim);
    k.u32("attention.value_length", c.head_dim);
  }
  k.file_type();
}

void gguf_write_tapml_windows(GgufKeys& k, const ModelConfig& c) {
  int window = 0;
  bool every = true;
  for (int l = 0; l < c.n_layers; ++l) {
    if (c.window(l) > 0 && window > 0 && c.window(l) != window)
      throw Error("sliding windows of different sizes per layer cannot be written to GGUF");
    if (c.window(l) > 0) window = c.window(l);
    every = every && c.window(l) > 0;
  }
  if (window == 0) return;
  k.writer().set_u32("tapml.attention.sliding_window", uint32_t(window));
  k.note("llama.cpp's " + k.arch() + " has no sliding window: it attends to every earlier " +
         "position where this model sees the last " + std::to_string(window) +
         " (tapml.attention.sliding_window keeps TapML exact)");
  if (every) return;
  gguf::Array pattern;
  for (int l = 0; l < c.n_layers; ++l) pattern.push_back({gguf::ValueType::BOOL, c.window(l) > 0});
  k.writer().set("tapml.attention.sliding_window_pattern",
                 {gguf::ValueType::ARRAY, std::move(pattern), gguf::ValueType::BOOL});
}

void gguf_write_window_period(GgufKeys& k, const ModelConfig& c, int default_period) {
  auto fits = [&](int p) {
    for (int l = 0; l < c.n_layers; ++l)
      if ((c.window(l) > 0) != (p == 0 || l % p < p - 1)) return false;
    return true;
  };
  if (fits(default_period)) return;
  for (int p = 0; p <= c.n_layers + 1; ++p)
    if (fits(p)) {
      k.u32("attention.sliding_window_pattern", p);
      return;
    }
  gguf::Array pattern;
  for (int l = 0; l < c.n_layers; ++l) pattern.push_back({gguf::ValueType::BOOL, c.window(l) > 0});
  k.writer().set("tapml.attention.sliding_window_pattern",
                 {gguf::ValueType::ARRAY, std::move(pattern), gguf::ValueType::BOOL});
  k.note("llama.cpp's " + k.arch() + " slides on layers by a period, and no period gives this " +
         "model's sliding layers (tapml.attention.sliding_window_pattern keeps TapML exact)");
}

void gguf_write_gelu(GgufKeys& k, const ModelConfig& c) {
  if ((c.ffn == FfnKind::Gelu || c.ffn == FfnKind::GeGlu) && c.gelu_approx == 0) {
    k.writer().set_string("tapml.activation.gelu", "erf");
    k.note("llama.cpp's " + k.arch() + " runs GELU's tanh approximation where this model runs " +
           "the exact (erf) GELU (tapml.activation.gelu keeps TapML exact)");
  }
}

void gguf_write_attention_scale(GgufKeys& k, const ModelConfig& c, double llama_cpp_scale) {
  double scale = c.attn_scale != 0 ? c.attn_scale : 1.0 / std::sqrt(double(c.head_dim));
  if (std::fabs(scale - llama_cpp_scale) > 1e-7 * llama_cpp_scale) {
    k.writer().set_f32("tapml.attention.scale", float(scale));
    char buf[200];
    std::snprintf(buf, sizeof buf,
                  "llama.cpp's %s scales q.k by %.6g where this model scales by %.6g "
                  "(tapml.attention.scale keeps TapML exact)",
                  k.arch().c_str(), llama_cpp_scale, scale);
    k.note(buf);
  }
}

}  // namespace tapml

#include "model/llama.h"

#include <cmath>
#include <numeric>
#include <string>

#include "core/error.h"

namespace tapml {

Val llama_forward(const LlamaConfig& cfg, Emitter& e, const LlamaCache& cache,
                  std::span<const int32_t> tokens, int pos, bool all_logits) {
  const int64_t T = int64_t(tokens.size());
  TAPML_REQUIRE(T > 0, "forward: no tokens");
  TAPML_REQUIRE(pos >= 0 && pos + T <= cfg.max_seq_len,
                "forward: positions " + std::to_string(pos) + ".." + std::to_string(pos + T - 1) +
                    " exceed the context length " + std::to_string(cfg.max_seq_len));

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
  auto one = [&](const std::string& site, Op op, const Attrs& a, const std::vector<Val>& in) {
    return e.call(site, op, a, in)[0];
  };

  Val x = one("token_embd", Op::Embedding, {}, {e.weight("token_embd.weight"), ids});
  for (int l = 0; l < cfg.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    auto w = [&](const char* name) { return e.weight(b + name + ".weight"); };

    Val h = one(b + "attn_norm", Op::RmsNorm, norm, {x, w("attn_norm")});
    Val q = one(b + "attn_q", Op::Matmul, {}, {h, w("attn_q")});
    Val k = one(b + "attn_k", Op::Matmul, {}, {h, w("attn_k")});
    Val v = one(b + "attn_v", Op::Matmul, {}, {h, w("attn_v")});
    q = one(b + "rope_q", Op::Rope, rope_attrs(cfg.n_heads), {q, pos_rows});
    k = one(b + "rope_k", Op::Rope, rope_attrs(cfg.n_kv_heads), {k, pos_rows});
    auto stored = e.call(b + "kv_store", Op::KvStore, {},
                         {cache.k[size_t(l)], cache.v[size_t(l)], k, v, pos_start});
    // Attention reads only the used prefix of the cache.
    Val keys = e.rows(stored[0], 0, pos + T), values = e.rows(stored[1], 0, pos + T);
    Val a = one(b + "attn", Op::Attention, attn, {q, keys, values});
    Val o = one(b + "attn_output", Op::Matmul, {}, {a, w("attn_output")});
    x = one(b + "attn_residual", Op::Add, {}, {x, o});

    h = one(b + "ffn_norm", Op::RmsNorm, norm, {x, w("ffn_norm")});
    Val gate = one(b + "ffn_gate", Op::Matmul, {}, {h, w("ffn_gate")});
    Val up = one(b + "ffn_up", Op::Matmul, {}, {h, w("ffn_up")});
    Val act = one(b + "ffn_act", Op::Swiglu, {}, {gate, up});
    Val down = one(b + "ffn_down", Op::Matmul, {}, {act, w("ffn_down")});
    x = one(b + "ffn_residual", Op::Add, {}, {x, down});
  }
  if (!all_logits && T > 1) x = e.rows(x, T - 1, 1);
  x = one("output_norm", Op::RmsNorm, norm, {x, e.weight("output_norm.weight")});
  Val classifier = e.weight(cfg.shared_classifier ? "token_embd.weight" : "output.weight");
  return one("output", Op::Matmul, {}, {x, classifier});
}

}  // namespace tapml

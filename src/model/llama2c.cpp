// llama2.c v0 ("legacy") checkpoints: a 7 x int32 header and then every weight as f32, in
// the order of llama2.c's run.c memory_map_weights(). There is no magic number, so the
// header is checked for plausibility and the file size must match it exactly.
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/mapped_file.h"
#include "model/model_file.h"

namespace tapml {

namespace {

constexpr int64_t kMaxField = int64_t(1) << 20;  // far above any real llama2.c model
constexpr uint32_t kExportMagic = 0x616b3432;    // "ak42": llama2.c export versions 1 and 2
constexpr size_t kHeaderBytes = 7 * 4;

struct Header {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

Header read_header(const uint8_t* data) {
  Header h;
  static_assert(sizeof(Header) == kHeaderBytes);
  std::memcpy(&h, data, kHeaderBytes);
  return h;
}

std::string header_problem(const Header& h) {
  struct Field {
    const char* name;
    int64_t value;
  };
  const Field fields[] = {{"dim", h.dim},
                          {"hidden_dim", h.hidden_dim},
                          {"n_layers", h.n_layers},
                          {"n_heads", h.n_heads},
                          {"n_kv_heads", h.n_kv_heads},
                          // negative marks a separate classifier, the size is its magnitude
                          {"vocab_size", h.vocab_size < 0 ? -int64_t(h.vocab_size) : h.vocab_size},
                          {"seq_len", h.seq_len}};
  for (const Field& f : fields) {
    if (f.value <= 0)
      return std::string(f.name) + " " + std::to_string(f.value) + " is not positive";
    if (f.value > kMaxField)
      return std::string(f.name) + " " + std::to_string(f.value) + " is absurdly large (limit " +
             std::to_string(kMaxField) + ")";
  }
  if (h.dim % h.n_heads != 0)
    return "dim " + std::to_string(h.dim) + " is not divisible by n_heads " +
           std::to_string(h.n_heads);
  if (h.n_heads % h.n_kv_heads != 0)
    return "n_heads " + std::to_string(h.n_heads) + " is not divisible by n_kv_heads " +
           std::to_string(h.n_kv_heads);
  if ((h.dim / h.n_heads) % 2 != 0)
    return "head size " + std::to_string(h.dim / h.n_heads) + " (dim / n_heads) is odd; RoPE " +
           "needs pairs";
  return "";
}

// Sums products of header fields, refusing on overflow (fields are at most 2^20 each, so
// a product of three and the sum of several can exceed 64 bits).
class ByteCount {
 public:
  void add(std::initializer_list<uint64_t> factors) {
    uint64_t p = 1;
    for (uint64_t f : factors) overflow_ |= __builtin_mul_overflow(p, f, &p);
    overflow_ |= __builtin_add_overflow(floats_, p, &floats_);
  }
  bool overflow() const { return overflow_; }
  uint64_t floats() const { return floats_; }

 private:
  uint64_t floats_ = 0;
  bool overflow_ = false;
};

}  // namespace

std::string llama2c_header_problem(const uint8_t* data, size_t size) {
  if (size < kHeaderBytes)
    return "file of " + std::to_string(size) + " bytes is shorter than the 28-byte header";
  return header_problem(read_header(data));
}

ModelFile load_llama2c_memory(std::shared_ptr<const void> owner, const uint8_t* data, size_t size,
                              std::string name) {
  TAPML_REQUIRE(data != nullptr || size == 0, name + ": no data");
  if (size >= 8) {
    uint32_t magic;
    std::memcpy(&magic, data, 4);
    if (magic == kExportMagic) {
      int32_t version;
      std::memcpy(&version, data + 4, 4);
      throw Error(name + ": llama2.c export version " + std::to_string(version) +
                  " (magic \"ak42\") is not supported; this build reads the legacy v0 layout "
                  "(export.py --version 0)");
    }
  }
  if (size < kHeaderBytes)
    throw Error(name + ": truncated: needs the 28-byte llama2.c header, file has " +
                std::to_string(size) + " bytes");
  Header h = read_header(data);
  if (std::string problem = header_problem(h); !problem.empty())
    throw Error(name + ": bad llama2.c header: " + problem);

  const bool separate_classifier = h.vocab_size < 0;
  const uint64_t dim = uint64_t(h.dim), hidden = uint64_t(h.hidden_dim),
                 layers = uint64_t(h.n_layers), heads = uint64_t(h.n_heads),
                 kv_heads = uint64_t(h.n_kv_heads), seq = uint64_t(h.seq_len),
                 vocab = uint64_t(separate_classifier ? -int64_t(h.vocab_size) : h.vocab_size);
  const uint64_t head_size = dim / heads;
  const uint64_t kv_dim = head_size * kv_heads;

  ByteCount count;
  count.add({vocab, dim});             // token_embedding
  count.add({layers, dim});            // rms_att
  count.add({layers, dim, dim});       // wq
  count.add({layers, kv_dim, dim});    // wk
  count.add({layers, kv_dim, dim});    // wv
  count.add({layers, dim, dim});       // wo
  count.add({layers, dim});            // rms_ffn
  count.add({layers, hidden, dim});    // w1
  count.add({layers, dim, hidden});    // w2
  count.add({layers, hidden, dim});    // w3
  count.add({dim});                    // rms_final
  count.add({2, seq, head_size / 2});  // freq_cis_real, freq_cis_imag
  if (separate_classifier) count.add({vocab, dim});
  uint64_t expected = 0;
  if (count.overflow() || __builtin_mul_overflow(count.floats(), 4, &expected) ||
      __builtin_add_overflow(expected, kHeaderBytes, &expected))
    throw Error(name + ": bad llama2.c header: the weights it describes overflow 64-bit sizes");
  if (size < expected)
    throw Error(name + ": truncated: needs " + std::to_string(expected) + " bytes, file has " +
                std::to_string(size));
  if (size > expected)
    throw Error(name + ": " + std::to_string(size - expected) +
                " extra bytes after the weights (expected " + std::to_string(expected) +
                " bytes, file has " + std::to_string(size) +
                "); not a llama2.c v0 checkpoint, or a different header");

  ModelFile m;
  m.path = name;
  m.format = "llama2c";
  m.arch = "llama";
  ModelConfig& c = m.config;
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.vocab_size = int(vocab);
  c.max_seq_len = h.seq_len;
  c.head_dim = c.rope_dim = int(head_size);
  c.rope_base = 10000.0f;
  c.norm_eps = 1e-5f;
  c.rope_pairing = RopePairing::Adjacent;
  c.shared_classifier = !separate_classifier;

  // The weights follow the header in order; each tensor borrows the next run of floats.
  const uint8_t* p = data + kHeaderBytes;
  auto next = [&](std::vector<int64_t> dims) {
    Shape shape(std::move(dims));
    Tensor t(DType::F32, shape, p, owner);
    p += size_t(shape.numel()) * 4;
    // Typed access needs 4-byte alignment; only a caller's odd buffer could miss it.
    return reinterpret_cast<uintptr_t>(t.bytes()) % 4 ? t.clone() : t;
  };
  const int64_t D = h.dim, H = h.hidden_dim, KV = int64_t(kv_dim), V = int64_t(vocab);
  const int L = h.n_layers;
  auto blk = [](int l, const char* what) { return "blk." + std::to_string(l) + "." + what; };
  auto per_layer = [&](const char* what, std::vector<int64_t> dims) {
    for (int l = 0; l < L; ++l) m.weights[blk(l, what)] = next(dims);
  };
  m.weights["token_embd.weight"] = next({V, D});
  per_layer("attn_norm.weight", {D});
  per_layer("attn_q.weight", {D, D});
  per_layer("attn_k.weight", {KV, D});
  per_layer("attn_v.weight", {KV, D});
  per_layer("attn_output.weight", {D, D});
  per_layer("ffn_norm.weight", {D});
  per_layer("ffn_gate.weight", {H, D});  // w1
  per_layer("ffn_down.weight", {D, H});  // w2
  per_layer("ffn_up.weight", {H, D});    // w3
  m.weights["output_norm.weight"] = next({D});
  p += size_t(2 * seq * (head_size / 2)) * 4;  // RoPE tables: recomputed, not stored
  if (separate_classifier) m.weights["output.weight"] = next({V, D});
  return m;
}

ModelFile load_llama2c(const std::string& path) {
  std::shared_ptr<const MappedFile> f = MappedFile::open(path);
  const uint8_t* data = f->data();
  size_t size = f->size();
  return load_llama2c_memory(std::move(f), data, size, path);
}

}  // namespace tapml

#include "model/convert.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <numbers>
#include <stdexcept>
#include <thread>

#include "core/error.h"
#include "core/thread_pool.h"
#include "format/gguf.h"
#include "model/hf_model.h"
#include "model/model_file.h"

namespace tapml {

namespace {

namespace fs = std::filesystem;

// The dtype the converter gives a tensor: f32 for vectors, norms, biases (any name not ending
// in .weight), routers and learned positions; the output type for the other matrices.
DType tensor_dtype(const std::string& name, const Shape& shape, DType matrices) {
  auto ends = [&](const std::string& s) {
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  if (shape.rank() <= 1 || ends("_norm.weight") || !ends(".weight")) return DType::F32;
  if (ends(".ffn_gate_inp.weight") || ends(".ffn_gate_inp_shexp.weight") ||
      name == "position_embd.weight")
    return DType::F32;
  return matrices;
}

// ---- llama.cpp's file types -------------------------------------------------------------

struct FileTypeEntry {
  FileType type;
  const char* name;
  DType dtype;
};

constexpr FileTypeEntry kFileTypes[] = {
    {FileType::F32, "f32", DType::F32},        {FileType::F16, "f16", DType::F16},
    {FileType::BF16, "bf16", DType::BF16},     {FileType::Q8_0, "q8_0", DType::Q8_0},
    {FileType::Q4_0, "q4_0", DType::Q4_0},     {FileType::Q4_1, "q4_1", DType::Q4_1},
    {FileType::Q5_0, "q5_0", DType::Q5_0},     {FileType::Q5_1, "q5_1", DType::Q5_1},
    {FileType::Q2_K, "q2_k", DType::Q2_K},     {FileType::Q3_K_M, "q3_k_m", DType::Q3_K},
    {FileType::Q4_K_M, "q4_k_m", DType::Q4_K}, {FileType::Q5_K_M, "q5_k_m", DType::Q5_K},
    {FileType::Q6_K, "q6_k", DType::Q6_K},
};

const FileTypeEntry& file_type_entry(FileType t) {
  for (const FileTypeEntry& e : kFileTypes)
    if (e.type == t) return e;
  throw Error("convert: file type " + std::to_string(uint32_t(t)) + " is not one TapML writes");
}

// What a tensor is to llama.cpp's choice of type, found from its name as llama.cpp does:
// output.weight and the token embeddings by the whole name, the rest by a part of it, tried in
// this order (so "attn_qkv.weight" is AttnQkv, never AttnV).
enum class Role {
  Output,
  TokenEmbd,
  AttnQkv,
  AttnKvB,
  AttnV,
  AttnK,
  AttnQ,
  AttnOutput,
  FfnUp,
  FfnGate,
  FfnDown,
  Other
};

Role role_of(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (name == "output.weight") return Role::Output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Role::TokenEmbd;
  if (has("attn_qkv.weight")) return Role::AttnQkv;
  if (has("attn_kv_b.weight")) return Role::AttnKvB;
  if (has("attn_v.weight")) return Role::AttnV;
  if (has("attn_k.weight")) return Role::AttnK;
  if (has("attn_q.weight")) return Role::AttnQ;
  if (has("attn_output.weight")) return Role::AttnOutput;
  if (has("ffn_up")) return Role::FfnUp;
  if (has("ffn_gate")) return Role::FfnGate;
  if (has("ffn_down")) return Role::FfnDown;
  return Role::Other;
}

// The tensors that carry V: llama.cpp gives them its more-bits treatment together.
bool carries_v(Role r) { return r == Role::AttnV || r == Role::AttnQkv || r == Role::AttnKvB; }

// ggml's number of dimensions: those up to the outermost one longer than 1 (a [1, n] tensor
// is 1-D to ggml).
int ggml_dims(const Shape& s) {
  const int rank = int(s.rank());
  int leading_ones = 0;
  while (leading_ones < rank - 1 && s[size_t(leading_ones)] == 1) ++leading_ones;
  return std::max(1, rank - leading_ones);
}

// Whether llama.cpp quantizes the tensor at all: matrices and stacked experts named *weight,
// except norms, routers, learned positions, token types and the small special matrices some
// architectures have (llama-quant.cpp's tensor_allows_quantization, for the names a text model
// can have).
bool llama_quantizes(const std::string& name, const Shape& shape) {
  if (ggml_dims(shape) < 2) return false;
  auto ends = [&](const std::string& s) {
    return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
  };
  if (!ends("weight")) return false;
  static const char* const kKept[] = {
      "_norm.weight",
      "ffn_gate_inp.weight",
      "ffn_gate_tid2eid.weight",
      "altup",
      "laurel",
      "per_layer_model_proj",
      "ssm_conv1d",
      "shortconv.conv.weight",
      "indexer.k_proj.weight",
      "indexer.q_proj.weight",
      "time_mix_first.weight",
      "time_mix_w0.weight",
      "time_mix_w1.weight",
      "time_mix_w2.weight",
      "time_mix_v0.weight",
      "time_mix_v1.weight",
      "time_mix_v2.weight",
      "time_mix_a0.weight",
      "time_mix_a1.weight",
      "time_mix_a2.weight",
      "time_mix_g1.weight",
      "time_mix_g2.weight",
      "time_mix_decay_w1.weight",
      "time_mix_decay_w2.weight",
      "time_mix_lerp_fused.weight",
      "attn_rel_b.weight",
      ".position_embd",
  };
  for (const char* k : kKept)
    if (name.find(k) != std::string::npos) return false;
  return name != "position_embd.weight" && name != "token_types.weight";
}

// The layer of a "blk.N." name, -1 for the others.
int layer_of(const std::string& name) {
  int layer = -1;
  if (name.rfind("blk.", 0) == 0) std::sscanf(name.c_str() + 4, "%d", &layer);
  return layer;
}

// llama.cpp's 70B Llama: 80 layers with grouped-query attention gets more bits in V.
bool is_70b(const QuantModel& m) {
  if (m.arch == "llama") return m.n_layers == 80 && m.n_heads != m.n_kv_heads;
  if (m.arch == "qwen2" || m.arch == "olmo" || m.arch == "deci") return m.n_layers == 80;
  if (m.arch == "jais2") return m.n_layers == 68;
  return false;
}

// A type whose blocks do not fit the row: the nearest 32-element type, then f16.
DType fallback_for_rows(DType t, int64_t cols) {
  if (cols % block_elems(t) == 0) return t;
  DType f = t;
  switch (t) {
    case DType::Q2_K:
    case DType::Q3_K:
      f = DType::Q4_0;
      break;
    case DType::Q4_K:
      f = DType::Q5_0;
      break;
    case DType::Q5_K:
      f = DType::Q5_1;
      break;
    case DType::Q6_K:
      f = DType::Q8_0;
      break;
    default:
      break;
  }
  return cols % block_elems(f) == 0 ? f : DType::F16;
}

}  // namespace

const std::vector<std::string>& file_type_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const FileTypeEntry& e : kFileTypes) v.push_back(e.name);
    return v;
  }();
  return names;
}

std::string_view file_type_name(FileType t) { return file_type_entry(t).name; }

std::optional<FileType> file_type_from_name(std::string_view name) {
  for (const FileTypeEntry& e : kFileTypes)
    if (name == e.name) return e.type;
  return std::nullopt;
}

DType file_type_dtype(FileType t) { return file_type_entry(t).dtype; }

// The rule, llama-quant.cpp's llama_tensor_get_type for these file types without an importance
// matrix, overrides or --pure:
//  - Tensors llama.cpp does not quantize (llama_quantizes false: vectors, norms, routers, ...)
//    keep their dtype. The others start from the file type's dtype (q4_k for q4_k_m); for
//    f32/f16/bf16 that is the end of it.
//  - output.weight, and token_embd.weight when there is no output.weight (tied embeddings):
//    q8_0 for Falcon or when the rows do not hold whole blocks of the file type's dtype; q6_k
//    unless that dtype is q8_0 (so q4_0, q5_1, q4_k_m, ... files have a q6_k classifier).
//  - V (attn_v, fused attn_qkv, attn_kv_b), counted i = 0, 1, ... in llama.cpp's tensor order
//    (by layer, then by name) over all n of them: q2_k -> q4_k with n_heads/n_kv_heads >= 4,
//    else q3_k; q3_k_m -> q5_k for i < 2, else q4_k; q4_k_m and q5_k_m -> q6_k where
//    more_bits(i, n); then a 70B Llama's q3_k/q4_k -> q5_k; then 8 experts -> q8_0.
//  - attn_k with 8 experts -> q8_0.
//  - ffn_down (also _exps, _shexp) of layer i of n (i counts the ffn_down tensors; with
//    experts it is the layer in the name): q2_k -> q3_k; q3_k_m -> q5_k for i < n/16, else
//    q4_k (Falcon: q4_k where more_bits, else q3_k); q4_k_m -> q6_k where more_bits (Falcon:
//    q6_k for i < n/16, else q5_k where more_bits, else q4_k); q5_k_m -> q6_k where more_bits.
//  - attn_output (not Falcon): with 8 experts q2_k, q3_k_m and q4_k_m -> q5_k; else q2_k ->
//    q3_k and q3_k_m -> q4_k.
//  - Last, a type whose blocks do not fit the row length: q2_k/q3_k -> q4_0, q4_k -> q5_0,
//    q5_k -> q5_1, q6_k -> q8_0, and f16 when even 32 does not divide the row.
// more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2: the first and last eighth of
// the layers and every third one between.
std::vector<DType> file_type_dtypes(FileType t, const QuantModel& model,
                                    const std::vector<QuantTensor>& tensors,
                                    std::vector<std::string>* notes) {
  const DType base = file_type_dtype(t);
  std::vector<DType> out(tensors.size());
  if (!is_block(base)) {
    for (size_t i = 0; i < tensors.size(); ++i)
      out[i] = llama_quantizes(tensors[i].name, tensors[i].shape) ? base : tensors[i].dtype;
    return out;
  }
  // llama.cpp decides in its loader's order: tensors outside blocks first, then by layer; by
  // name within each. The counters below depend on it.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    int la = layer_of(tensors[a].name), lb = layer_of(tensors[b].name);
    if (la != lb) return la < lb;
    return tensors[a].name < tensors[b].name;
  });
  bool tied = true;
  int n_v = 0;
  for (const QuantTensor& q : tensors) {
    Role r = role_of(q.name);
    if (r == Role::Output) tied = false;
    if (carries_v(r)) ++n_v;
  }
  const int n_layers = model.n_layers;
  const int gqa = model.n_kv_heads > 0 ? model.n_heads / model.n_kv_heads : 0;
  const bool eight_experts = model.n_experts == 8, falcon = model.arch == "falcon";
  auto more_bits = [](int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; };
  int i_v = 0, i_down = 0;
  std::map<std::string, int> fell_back;  // "q4_k -> q5_0" -> count
  int64_t fell_cols = -1;
  for (size_t k : order) {
    const QuantTensor& q = tensors[k];
    if (!llama_quantizes(q.name, q.shape)) {
      out[k] = q.dtype;
      continue;
    }
    const Role r = role_of(q.name);
    const int64_t cols = q.shape[q.shape.rank() - 1];
    DType d = base;
    if (r == Role::Output || (tied && r == Role::TokenEmbd)) {
      if (falcon || cols % block_elems(base) != 0)
        d = DType::Q8_0;
      else if (base != DType::Q8_0)
        d = DType::Q6_K;
    } else if (r == Role::TokenEmbd) {
      // The file type's dtype.
    } else if (carries_v(r)) {
      if (t == FileType::Q2_K)
        d = gqa >= 4 ? DType::Q4_K : DType::Q3_K;
      else if (t == FileType::Q3_K_M)
        d = i_v < 2 ? DType::Q5_K : DType::Q4_K;
      else if ((t == FileType::Q4_K_M || t == FileType::Q5_K_M) && more_bits(i_v, n_v))
        d = DType::Q6_K;
      if (is_70b(model) && (d == DType::Q3_K || d == DType::Q4_K)) d = DType::Q5_K;
      if (eight_experts) d = DType::Q8_0;
      ++i_v;
    } else if (r == Role::AttnK) {
      if (eight_experts) d = DType::Q8_0;
    } else if (r == Role::FfnDown) {
      int i = i_down;
      if (model.n_experts > 1) {
        i = layer_of(q.name);
        if (i < 0 || i >= n_layers)
          throw Error("convert: " + q.name + " is not in a layer 0.." +
                      std::to_string(n_layers - 1));
      }
      const int n = n_layers;
      if (t == FileType::Q2_K) {
        d = DType::Q3_K;
      } else if (t == FileType::Q3_K_M) {
        d = i < n / 16 ? DType::Q5_K : !falcon || more_bits(i, n) ? DType::Q4_K : DType::Q3_K;
      } else if (t == FileType::Q4_K_M) {
        if (falcon)
          d = i < n / 16 ? DType::Q6_K : more_bits(i, n) ? DType::Q5_K : DType::Q4_K;
        else if (more_bits(i, n))
          d = DType::Q6_K;
      } else if (t == FileType::Q5_K_M && more_bits(i, n)) {
        d = DType::Q6_K;
      }
      ++i_down;
    } else if (r == Role::AttnOutput && !falcon) {
      if (eight_experts) {
        if (t == FileType::Q2_K || t == FileType::Q3_K_M || t == FileType::Q4_K_M) d = DType::Q5_K;
      } else if (t == FileType::Q2_K) {
        d = DType::Q3_K;
      } else if (t == FileType::Q3_K_M) {
        d = DType::Q4_K;
      }
    }
    const DType fitted = fallback_for_rows(d, cols);
    if (fitted != d) {
      ++fell_back[std::string(dtype_name(d)) + " -> " + std::string(dtype_name(fitted))];
      fell_cols = fell_cols < 0 || fell_cols == cols ? cols : 0;
    }
    out[k] = fitted;
  }
  if (notes && !fell_back.empty()) {
    std::string line;
    int count = 0;
    for (const auto& [change, n] : fell_back) {
      line += (line.empty() ? "" : ", ") + change + " (" + std::to_string(n) + ")";
      count += n;
    }
    notes->push_back(
        std::to_string(count) + " tensor" + (count == 1 ? "" : "s") + " whose rows " +
        (fell_cols > 0 ? "(" + std::to_string(fell_cols) + " wide) " : "") +
        "do not hold whole blocks got another type, as llama-quantize gives them: " + line);
  }
  return out;
}

namespace {

// llama.cpp's converter (LlamaModel.permute): within each head, rows (i, i + d/2) become rows
// (2i, 2i + 1), so that RoPE on adjacent pairs rotates what rotate-half rotated.
Tensor permute_for_adjacent_rope(const Tensor& t, int64_t head_dim) {
  const int64_t rows = t.shape()[0];
  TAPML_REQUIRE(head_dim % 2 == 0 && rows % head_dim == 0,
                "permute: rows are not whole heads of even size");
  std::vector<std::pair<int64_t, int64_t>> blocks;
  for (int64_t head = 0; head < rows / head_dim; ++head)
    for (int64_t i = 0; i < head_dim / 2; ++i) {
      blocks.push_back({head * head_dim + i, 1});
      blocks.push_back({head * head_dim + head_dim / 2 + i, 1});
    }
  return gather_rows(t, blocks);
}

// Llama 3.1's rope_freqs.weight computed as the converter computes it (LlamaModel.
// generate_extra_tensors: torch float32 arithmetic), so that the bytes match.
Tensor llama3_rope_freqs_as_converter(const HfConfig::Rope& r, int dim) {
  const float low_wavelen = float(r.original_context / r.low_freq_factor);
  const float high_wavelen = float(r.original_context / r.high_freq_factor);
  std::vector<float> out;
  for (int i = 0; i < dim; i += 2) {
    float freq = 1.0f / std::pow(float(r.theta), float(i) / float(dim));
    float wavelen = float(2 * std::numbers::pi) / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(float(r.factor));
    } else {
      float smooth = (float(r.original_context) / wavelen - float(r.low_freq_factor)) /
                     float(r.high_freq_factor - r.low_freq_factor);
      out.push_back(1.0f / ((1.0f - smooth) / float(r.factor) + smooth));
    }
  }
  return Tensor::from_f32(Shape{int64_t(out.size())}, out);
}

// Element i of an f32, f16 or bf16 tensor as f32.
float load_element(const Tensor& src, int64_t i) {
  const std::byte* p = src.bytes();
  switch (src.dtype()) {
    case DType::F32: {
      float x;
      std::memcpy(&x, p + 4 * i, 4);
      return x;
    }
    case DType::F16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return f16_to_f32(h);
    }
    case DType::BF16: {
      uint16_t b;
      std::memcpy(&b, p + 2 * i, 2);
      return bf16_to_f32(b);
    }
    default:
      throw Error("convert: a tensor of dtype " + std::string(dtype_name(src.dtype())));
  }
}

// Writes the bytes [offset, offset + chunk.size()) of `src` converted to `to` into `chunk`.
// Float types convert element by element. A block type quantizes every row the chunk touches
// with quantize_row (rows in parallel on `pool`) and keeps the chunk's part of it, so a row
// that two chunks share is quantized twice, identically.
void convert_chunk(const Tensor& src, DType to, uint64_t offset, std::span<std::byte> chunk,
                   ThreadPool& pool) {
  if (src.dtype() == to) {
    std::memcpy(chunk.data(), src.bytes() + offset, chunk.size());
    return;
  }
  if (is_block(to)) {
    const QuantType q = *block_quant(to);
    const Shape& shape = src.shape();
    const int64_t cols = shape[shape.rank() - 1];
    const uint64_t row = row_bytes(to, cols), end = offset + chunk.size();
    const int64_t first = int64_t(offset / row), last = int64_t((end + row - 1) / row);
    pool.parallel_for(last - first, [&](int64_t b, int64_t e) {
      std::vector<float> values(static_cast<size_t>(cols));
      std::vector<std::byte> blocks(row);
      for (int64_t r = first + b; r < first + e; ++r) {
        if (src.dtype() == DType::F32) {
          std::memcpy(values.data(), src.bytes() + uint64_t(r) * uint64_t(cols) * 4,
                      size_t(cols) * 4);
        } else {
          for (int64_t j = 0; j < cols; ++j) values[size_t(j)] = load_element(src, r * cols + j);
        }
        quantize_row(q, values.data(), blocks.data(), cols);
        const uint64_t lo = std::max<uint64_t>(offset, uint64_t(r) * row);
        const uint64_t hi = std::min<uint64_t>(end, uint64_t(r + 1) * row);
        std::memcpy(chunk.data() + (lo - offset), blocks.data() + (lo - uint64_t(r) * row),
                    hi - lo);
      }
    });
    return;
  }
  const size_t out_size = dtype_size(to);
  TAPML_REQUIRE(offset % out_size == 0 && chunk.size() % out_size == 0,
                "convert: a chunk that splits an element");
  const int64_t first = int64_t(offset / out_size), n = int64_t(chunk.size() / out_size);
  std::byte* out = chunk.data();
  for (int64_t i = 0; i < n; ++i) {
    float x = load_element(src, first + i);
    if (to == DType::F32) {
      std::memcpy(out + 4 * i, &x, 4);
    } else {
      uint16_t h = to == DType::F16 ? f32_to_f16(x) : f32_to_bf16(x);
      std::memcpy(out + 2 * i, &h, 2);
    }
  }
}

// gguf-py's Metadata.id_to_title: words split at '-' and spaces; all-lowercase words that are
// not version numbers get Python's str.title().
std::string id_to_title(const std::string& id) {
  std::string spaced = id;
  for (char& ch : spaced)
    if (ch == '-') ch = ' ';
  std::string out, word;
  auto flush = [&] {
    if (word.empty()) return;
    bool cased = false, lower = true;
    for (char ch : word)
      if (std::isalpha(static_cast<unsigned char>(ch))) {
        cased = true;
        lower = lower && std::islower(static_cast<unsigned char>(ch));
      }
    bool version = std::isdigit(static_cast<unsigned char>(word[0])) ||
                   (word[0] == 'v' && word.size() > 1 &&
                    word.find_first_not_of("0123456789.", 1) == std::string::npos);
    if (cased && lower && !version) {
      bool prev_cased = false;
      for (char& ch : word) {
        bool alpha = std::isalpha(static_cast<unsigned char>(ch));
        if (alpha)
          ch = char(prev_cased ? std::tolower(static_cast<unsigned char>(ch))
                               : std::toupper(static_cast<unsigned char>(ch)));
        prev_cased = alpha;
      }
    }
    out += (out.empty() ? "" : " ") + word;
    word.clear();
  };
  for (char ch : spaced) {
    if (std::isspace(static_cast<unsigned char>(ch)))
      flush();
    else
      word += ch;
  }
  flush();
  return out;
}

// gguf-py's model_weight_count_rounded_notation: "152K", "1.5B".
std::string rounded_count(double n) {
  const char* suffix = "K";
  double scaled = n * 1e-3;
  if (n > 1e12) {
    scaled = n * 1e-12, suffix = "T";
  } else if (n > 1e9) {
    scaled = n * 1e-9, suffix = "B";
  } else if (n > 1e6) {
    scaled = n * 1e-6, suffix = "M";
  }
  std::string digits = std::to_string(static_cast<long long>(std::nearbyint(scaled)));
  digits.erase(0, digits.find_first_not_of('0'));
  int fix = std::max(2 - int(digits.size()), 0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f%s", fix, scaled, suffix);
  return buf;
}

struct PlannedTensor {
  std::string name;  // in the file
  Tensor data;       // as TapML holds it (permuted where the file wants it)
  DType dtype;       // in the file
};

// gguf-py's size_label: the parameter count, or EXPERTSxSIZE for mixtures of experts.
std::string size_label(const std::vector<PlannedTensor>& tensors) {
  double total = 0, shared = 0, expert = 0;
  int64_t expert_sum = 0, expert_tensors = 0;
  for (const PlannedTensor& t : tensors) {
    double size = double(t.data.numel());
    if (t.name.find("_exps.") != std::string::npos && t.data.shape().rank() >= 3) {
      int64_t count = t.data.shape()[t.data.shape().rank() - 3];
      expert += size / double(count);
      expert_sum += count;
      ++expert_tensors;
    } else {
      shared += size;
    }
    total += size;
  }
  if (expert_tensors > 0)
    return std::to_string(expert_sum / expert_tensors) + "x" + rounded_count(shared + expert);
  return rounded_count(total);
}

std::string folder_name(const std::string& dir) {
  fs::path p = fs::absolute(fs::path(dir)).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

// The file type of a plain conversion (f32, f16 or bf16 matrices); UsageError for others.
FileType plain_file_type(DType d) {
  switch (d) {
    case DType::F32:
      return FileType::F32;
    case DType::F16:
      return FileType::F16;
    case DType::BF16:
      return FileType::BF16;
    default:
      throw UsageError("a GGUF file's weights are f32, f16 or bf16, not " +
                       std::string(dtype_name(d)) +
                       " (quantized files take a file type: " + "q8_0, q4_k_m, ...)");
  }
}

FileType chosen_file_type(const ConvertOptions& o) {
  return o.file_type ? *o.file_type : plain_file_type(o.dtype);
}

// Where `out` is written: a symbolic link is followed, as for every output.
std::string output_target(const std::string& out) {
  std::error_code ec;
  std::string target = out;
  if (fs::is_symlink(fs::symlink_status(out, ec))) target = fs::weakly_canonical(out, ec).string();
  if (fs::exists(target, ec) && !fs::is_regular_file(target, ec))
    throw UsageError(out + ": a GGUF file is written as a regular file");
  return target;
}

// Converts each planned tensor as the writer asks for its bytes, reporting progress; `done`
// must outlive the writer's write().
void add_planned(gguf::Writer& w, const std::vector<PlannedTensor>& plan, uint64_t total,
                 uint64_t& done, ThreadPool& pool, const ConvertOptions& o) {
  for (const PlannedTensor& t : plan) {
    w.add_tensor(t.name, t.dtype, t.data.shape(),
                 [&o, &done, &pool, total, src = t.data, to = t.dtype, name = t.name](
                     uint64_t offset, std::span<std::byte> chunk) {
                   convert_chunk(src, to, offset, chunk, pool);
                   done += chunk.size();
                   if (o.progress) o.progress(done, total, name);
                 });
  }
}

void count_dtypes(const std::vector<PlannedTensor>& plan, ConvertResult& r) {
  for (const PlannedTensor& t : plan) ++r.dtypes[std::string(dtype_name(t.dtype))];
}

// TapML computes with block types in matrices only (model_file.cpp's validate_model), so a
// file whose expert stacks the file type quantizes could not be run or read back.
void refuse_quantized_stacks(const std::vector<PlannedTensor>& plan, const std::string& family,
                             FileType type) {
  for (const PlannedTensor& t : plan)
    if (is_block(t.dtype) && t.data.shape().rank() > 2)
      throw Error("convert: " + std::string(file_type_name(type)) + " would store " + t.name + " " +
                  t.data.shape().str() + " as " + std::string(dtype_name(t.dtype)) +
                  ", and TapML runs quantized blocks in 2-D matrices only: " + family +
                  "'s stacked experts cannot be quantized yet (f32, f16 and bf16 can)");
}

int converter_threads() { return int(std::clamp(std::thread::hardware_concurrency(), 1u, 64u)); }

// Loads the written file and requires the source's hyperparameters (and `more`); a file that
// does not read back is removed and reported as a bug.
void read_back(const std::string& target, const std::string& source, const ModelConfig& c,
               const std::function<void(const ModelFile&)>& more) {
  try {
    ModelFile g = load_model(target);
    std::string diff = config_difference(c, g.config);
    if (!diff.empty()) throw Error("its hyperparameters differ from the source's: " + diff);
    more(g);
  } catch (const Error& e) {
    std::error_code ec;
    fs::remove(target, ec);
    throw std::logic_error("convert: the written " + target + " does not read back as " + source +
                           " (" + e.what() + "); it was removed");
  }
}

}  // namespace

ConvertResult convert_hf_folder(const std::string& dir, const std::string& out,
                                const ConvertOptions& o) {
  const FileType ftype = chosen_file_type(o);
  const DType matrices = file_type_dtype(ftype);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(dir +
                ": not a folder (convert reads a Hugging Face model folder: config.json "
                "and safetensors)");
  const std::string target = output_target(out);

  ModelFile m = load_model(dir);
  const Architecture& family = architecture(m.arch);
  const ModelConfig& c = m.config;
  const HfConfig& h = *m.hf;
  const std::string arch(family.gguf_architecture());

  if (c.rope) {
    HfConfig::Rope r = h.rope(c.rope_base, "full_attention");
    if (r.type == "linear") h.fail("linear RoPE scaling is not converted yet");
    if (c.rope_freqs && arch != "llama" && arch != "granite")
      h.fail("Llama 3 RoPE scaling cannot be converted for " + arch +
             ": llama.cpp reads rope_freqs.weight for llama and granite only");
  }
  const bool permute = c.rope && c.rope_pairing != family.gguf_rope_pairing();
  if (permute && (c.qkv_fused || c.rope_dim != c.head_dim))
    h.fail(
        "q/k rows cannot be permuted for llama.cpp's RoPE with fused q/k/v or partial "
        "rotary embeddings");

  // The tensors, in the family's order, under llama.cpp's names and dtypes.
  std::vector<PlannedTensor> plan;
  for (const WeightSpec& spec : family.weights(c)) {
    Tensor t = m.weights.at(spec.name);
    if (spec.name == "rope_freqs.weight")
      t = llama3_rope_freqs_as_converter(h.rope(c.rope_base), c.head_dim);
    const std::string role = spec.name.substr(spec.name.find('.', spec.name.find('.') + 1) + 1);
    if (permute && spec.name.rfind("blk.", 0) == 0 &&
        (role == "attn_q.weight" || role == "attn_q.bias" || role == "attn_k.weight" ||
         role == "attn_k.bias"))
      t = permute_for_adjacent_rope(t, c.head_dim);
    std::string name = family.gguf_tensor_name(c, spec.name);
    // A quantized file starts from the f32 conversion, as llama-quantize would.
    plan.push_back(
        {name, t, tensor_dtype(name, t.shape(), is_block(matrices) ? DType::F32 : matrices)});
  }
  std::vector<std::string> type_notes;
  if (is_block(matrices)) {
    std::vector<QuantTensor> qt;
    for (const PlannedTensor& t : plan) qt.push_back({t.name, t.data.shape(), t.dtype});
    QuantModel qm{arch, c.n_layers, c.n_heads, c.n_kv_heads,
                  c.ffn == FfnKind::Moe ? c.n_experts : 0};
    std::vector<DType> types = file_type_dtypes(ftype, qm, qt, &type_notes);
    for (size_t i = 0; i < plan.size(); ++i) plan[i].dtype = types[i];
    refuse_quantized_stacks(plan, m.arch, ftype);
  }

  gguf::Writer w;
  w.set_string("general.architecture", arch);
  w.set_string("general.type", "model");
  w.set_string("general.name", id_to_title(folder_name(dir)));
  w.set_string("general.size_label", size_label(plan));
  GgufKeys keys(w, arch, uint32_t(ftype));
  family.gguf_metadata(keys, c, h);
  // Some of llama.cpp's converters write no file type (GPT-NeoX's), but llama-quantize always
  // does.
  if (is_block(matrices)) w.set_u32("general.file_type", uint32_t(ftype));
  w.set_u32("general.quantization_version", 2);
  // No tokenizer: llama.cpp makes ARCH.vocab_size placeholder tokens.
  w.set_string("tokenizer.ggml.model", "none");
  keys.u32("vocab_size", c.vocab_size);

  uint64_t total = 0, done = 0;
  for (const PlannedTensor& t : plan) total += uint64_t(tensor_bytes(t.dtype, t.data.shape()));
  ThreadPool pool(converter_threads());
  add_planned(w, plan, total, done, pool, o);
  w.write(target);

  // The file must read back as the folder's model.
  read_back(target, dir, c, [&](const ModelFile& g) {
    if (c.rope && g.config.rope_pairing != family.gguf_rope_pairing())
      throw Error("it reads back with the wrong RoPE pairing");
  });

  ConvertResult r;
  r.family = m.arch;
  r.arch = arch;
  r.tensors = plan.size();
  r.tensor_bytes = total;
  r.notes = keys.notes();
  r.notes.insert(r.notes.end(), type_notes.begin(), type_notes.end());
  count_dtypes(plan, r);
  return r;
}

ConvertResult convert_gguf_file(const std::string& in, const std::string& out,
                                const ConvertOptions& o) {
  const FileType ftype = chosen_file_type(o);
  if (!gguf::File::has_magic(in))
    throw Error(in +
                ": not a GGUF file (convert reads a GGUF file or a Hugging Face model folder)");
  const std::string target = output_target(out);
  ModelFile m = load_model(in);
  const gguf::File& src = *m.gguf;
  const std::string arch = src.get_string("general.architecture");

  std::vector<PlannedTensor> plan;
  std::vector<QuantTensor> qt;
  for (const gguf::TensorInfo& ti : src.tensors()) {
    const bool readable = gguf::tensor_type_readable(ti.type);
    Tensor t = readable ? src.tensor(ti.name) : Tensor();
    if (!readable || is_block(t.dtype())) {
      std::string type(gguf::tensor_type_name(ti.type));
      throw Error(in + ": " + ti.name + " is " +
                  (type.empty() ? "of ggml type " + std::to_string(ti.type) : type) +
                  "; convert reads f32, f16 and bf16 tensors (it does not requantize)");
    }
    qt.push_back({ti.name, t.shape(), t.dtype()});
    plan.push_back({ti.name, t, t.dtype()});
  }
  const ModelConfig& c = m.config;
  QuantModel qm{arch, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn == FfnKind::Moe ? c.n_experts : 0};
  std::vector<std::string> notes;
  std::vector<DType> types = file_type_dtypes(ftype, qm, qt, &notes);
  for (size_t i = 0; i < plan.size(); ++i) plan[i].dtype = types[i];
  refuse_quantized_stacks(plan, m.arch, ftype);

  gguf::Writer w;
  for (const auto& [key, value] : src.metadata())
    if (key != "general.alignment" && key != "general.file_type" &&
        key != "general.quantization_version")
      w.set(key, value);
  w.set_u32("general.file_type", uint32_t(ftype));
  w.set_u32("general.quantization_version", 2);

  uint64_t total = 0, done = 0;
  for (const PlannedTensor& t : plan) total += uint64_t(tensor_bytes(t.dtype, t.data.shape()));
  ThreadPool pool(converter_threads());
  add_planned(w, plan, total, done, pool, o);
  w.write(target);

  read_back(target, in, c, [](const ModelFile&) {});

  ConvertResult r;
  r.family = m.arch;
  r.arch = arch;
  r.tensors = plan.size();
  r.tensor_bytes = total;
  r.notes = notes;
  count_dtypes(plan, r);
  return r;
}

std::string config_difference(const ModelConfig& a, const ModelConfig& b) {
  auto show = [](double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", x);
    return std::string(buf);
  };
  auto differ = [&](const char* field, double x, double y) {
    return std::string(field) + " " + show(x) + " vs " + show(y);
  };
  auto close = [](double x, double y) {
    return x == y || std::fabs(x - y) <= 1e-6 * std::max(std::fabs(x), std::fabs(y));
  };
#define TAPML_SAME(field) \
  if (a.field != b.field) return differ(#field, double(a.field), double(b.field))
#define TAPML_SAME_KIND(field) \
  if (a.field != b.field) return differ(#field, double(int(a.field)), double(int(b.field)))
#define TAPML_CLOSE(field) \
  if (!close(a.field, b.field)) return differ(#field, double(a.field), double(b.field))
  TAPML_SAME(dim);
  TAPML_SAME(hidden_dim);
  TAPML_SAME(n_layers);
  TAPML_SAME(n_heads);
  TAPML_SAME(n_kv_heads);
  TAPML_SAME(vocab_size);
  TAPML_SAME(max_seq_len);
  TAPML_SAME(head_dim);
  TAPML_SAME(norm_eps);
  TAPML_SAME(shared_classifier);
  TAPML_SAME_KIND(norm);
  if (a.norm == NormKind::Layer) TAPML_SAME(norm_bias);
  TAPML_SAME_KIND(block);
  TAPML_SAME(pre_norms);
  TAPML_SAME(post_norms);
  if (a.block == BlockKind::Parallel) TAPML_SAME(second_norm);
  TAPML_SAME_KIND(ffn);
  if (a.ffn == FfnKind::Gelu || a.ffn == FfnKind::GeGlu) TAPML_SAME(gelu_approx);
  TAPML_SAME(qkv_fused);
  if (a.ffn == FfnKind::SwiGlu || a.ffn == FfnKind::GeGlu) TAPML_SAME(gate_up_fused);
  TAPML_SAME(qkv_bias);
  TAPML_SAME(attn_out_bias);
  if (a.ffn != FfnKind::Moe) TAPML_SAME(ffn_bias);
  TAPML_SAME(output_bias);
  TAPML_SAME_KIND(qk_norm);
  TAPML_SAME(learned_positions);
  TAPML_SAME(rope);
  if (a.rope) {
    TAPML_SAME(rope_dim);
    TAPML_SAME(rope_freqs);
    for (int l = 0; l < a.n_layers; ++l)
      if (a.base(l) != b.base(l))
        return "layer " + std::to_string(l) + " " + differ("rope_base", a.base(l), b.base(l));
  }
  TAPML_CLOSE(embed_scale);
  TAPML_CLOSE(residual_scale);
  TAPML_CLOSE(logit_scale);
  TAPML_CLOSE(attn_softcap);
  TAPML_CLOSE(final_softcap);
  const double sa = a.attn_scale != 0 ? a.attn_scale : 1.0 / std::sqrt(double(a.head_dim));
  const double sb = b.attn_scale != 0 ? b.attn_scale : 1.0 / std::sqrt(double(b.head_dim));
  if (!close(sa, sb)) return differ("attn_scale", sa, sb);
  for (int l = 0; l < a.n_layers; ++l)
    if (a.window(l) != b.window(l))
      return "layer " + std::to_string(l) + " " + differ("window", a.window(l), b.window(l));
  if (a.ffn == FfnKind::Moe) {
    TAPML_SAME(n_experts);
    TAPML_SAME(n_experts_used);
    TAPML_SAME(experts_norm);
    TAPML_SAME(expert_hidden_dim);
    TAPML_SAME(shared_expert_dim);
    if (a.shared_expert_dim) TAPML_SAME(shared_expert_gate);
  }
#undef TAPML_SAME
#undef TAPML_SAME_KIND
#undef TAPML_CLOSE
  return "";
}

}  // namespace tapml

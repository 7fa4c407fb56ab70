#include "model/convert.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <numbers>
#include <stdexcept>

#include "core/error.h"
#include "format/gguf.h"
#include "model/hf_model.h"
#include "model/model_file.h"

namespace tapml {

namespace {

namespace fs = std::filesystem;

// llama.cpp's LLAMA_FTYPE for the dtype of the matrices.
uint32_t file_type(DType d) {
  switch (d) {
    case DType::F32:
      return 0;  // ALL_F32
    case DType::F16:
      return 1;  // MOSTLY_F16
    case DType::BF16:
      return 32;  // MOSTLY_BF16
    default:
      throw UsageError("a GGUF file's weights are f32, f16 or bf16, not " +
                       std::string(dtype_name(d)));
  }
}

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

// Writes elements of `src` converted to `to` into `chunk`, which starts `offset` bytes into the
// converted tensor.
void convert_chunk(const Tensor& src, DType to, uint64_t offset, std::span<std::byte> chunk) {
  const size_t out_size = dtype_size(to);
  TAPML_REQUIRE(offset % out_size == 0 && chunk.size() % out_size == 0,
                "convert: a chunk that splits an element");
  if (src.dtype() == to) {
    std::memcpy(chunk.data(), src.bytes() + offset, chunk.size());
    return;
  }
  const int64_t first = int64_t(offset / out_size), n = int64_t(chunk.size() / out_size);
  auto load = [&](int64_t i) -> float {
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
  };
  std::byte* out = chunk.data();
  for (int64_t i = 0; i < n; ++i) {
    float x = load(first + i);
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

}  // namespace

ConvertResult convert_hf_folder(const std::string& dir, const std::string& out,
                                const ConvertOptions& o) {
  const uint32_t ftype = file_type(o.dtype);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(dir +
                ": not a folder (convert reads a Hugging Face model folder: config.json "
                "and safetensors)");
  // Where the file goes: a symbolic link is followed, as for every output.
  std::string target = out;
  if (fs::is_symlink(fs::symlink_status(out, ec))) target = fs::weakly_canonical(out, ec).string();
  if (fs::exists(target, ec) && !fs::is_regular_file(target, ec))
    throw UsageError(out + ": a GGUF file is written as a regular file");

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
    plan.push_back({name, t, tensor_dtype(name, t.shape(), o.dtype)});
  }

  gguf::Writer w;
  w.set_string("general.architecture", arch);
  w.set_string("general.type", "model");
  w.set_string("general.name", id_to_title(folder_name(dir)));
  w.set_string("general.size_label", size_label(plan));
  GgufKeys keys(w, arch, ftype);
  family.gguf_metadata(keys, c, h);
  w.set_u32("general.quantization_version", 2);
  // No tokenizer: llama.cpp makes ARCH.vocab_size placeholder tokens.
  w.set_string("tokenizer.ggml.model", "none");
  keys.u32("vocab_size", c.vocab_size);

  uint64_t total = 0, done = 0;
  for (const PlannedTensor& t : plan) total += uint64_t(tensor_bytes(t.dtype, t.data.shape()));
  for (const PlannedTensor& t : plan) {
    w.add_tensor(t.name, t.dtype, t.data.shape(),
                 [&o, &done, total, src = t.data, to = t.dtype, name = t.name](
                     uint64_t offset, std::span<std::byte> chunk) {
                   convert_chunk(src, to, offset, chunk);
                   done += chunk.size();
                   if (o.progress) o.progress(done, total, name);
                 });
  }
  w.write(target);

  // The file must read back as the folder's model.
  try {
    ModelFile g = load_model(target);
    std::string diff = config_difference(c, g.config);
    if (!diff.empty()) throw Error("its hyperparameters differ from the folder's: " + diff);
    if (c.rope && g.config.rope_pairing != family.gguf_rope_pairing())
      throw Error("it reads back with the wrong RoPE pairing");
  } catch (const Error& e) {
    fs::remove(target, ec);
    throw std::logic_error("convert: the written " + target + " does not read back as " + dir +
                           " (" + e.what() + "); it was removed");
  }

  ConvertResult r;
  r.family = m.arch;
  r.arch = arch;
  r.tensors = plan.size();
  r.tensor_bytes = total;
  r.notes = keys.notes();
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

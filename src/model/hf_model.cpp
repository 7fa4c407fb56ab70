#include "model/hf_model.h"

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numbers>

#include "core/error.h"

namespace tapml {

using nlohmann::json;

HfConfig::HfConfig(std::shared_ptr<const json> j, std::string path)
    : json_(std::move(j)), path_(std::move(path)) {
  TAPML_REQUIRE(json_ && json_->is_object(), path_ + ": not a JSON object");
}

void HfConfig::fail(const std::string& what) const { throw Error(path_ + ": " + what); }

const json* HfConfig::find(const std::string& key) const {
  auto it = json_->find(key);
  if (it == json_->end() || it->is_null()) return nullptr;
  return &*it;
}

bool HfConfig::has(const std::string& key) const { return find(key) != nullptr; }

int HfConfig::whole(const std::string& key, std::optional<int> fallback, int64_t lo,
                    int64_t hi) const {
  const json* v = find(key);
  if (!v) {
    if (!fallback) fail("'" + key + "' is missing");
    return *fallback;
  }
  if (!v->is_number_integer() && !v->is_number_unsigned())
    fail("'" + key + "' is " + v->dump() + ", expected an integer");
  int64_t x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX)
                  ? INT64_MAX
                  : v->get<int64_t>();
  if (x < lo || x > hi)
    fail("'" + key + "' = " + v->dump() + " is out of range (" + std::to_string(lo) + " to " +
         std::to_string(hi) + ")");
  return int(x);
}

int HfConfig::integer(const std::string& key, std::optional<int> fallback, int max) const {
  return whole(key, fallback, 1, max);
}

int HfConfig::count(const std::string& key, std::optional<int> fallback) const {
  return whole(key, fallback, 0, int64_t(1) << 30);
}

double HfConfig::number(const std::string& key, std::optional<double> fallback) const {
  const json* v = find(key);
  if (!v) {
    if (!fallback) fail("'" + key + "' is missing");
    return *fallback;
  }
  if (!v->is_number()) fail("'" + key + "' is " + v->dump() + ", expected a number");
  double x = v->get<double>();
  if (!std::isfinite(x)) fail("'" + key + "' is not finite");
  return x;
}

bool HfConfig::flag(const std::string& key, bool fallback) const {
  const json* v = find(key);
  if (!v) return fallback;
  if (!v->is_boolean()) fail("'" + key + "' is " + v->dump() + ", expected true or false");
  return v->get<bool>();
}

std::string HfConfig::text(const std::string& key, std::optional<std::string> fallback) const {
  const json* v = find(key);
  if (!v) {
    if (!fallback) fail("'" + key + "' is missing");
    return *fallback;
  }
  if (!v->is_string()) fail("'" + key + "' is " + v->dump() + ", expected a string");
  return v->get<std::string>();
}

size_t HfConfig::list_size(const std::string& key) const {
  const json* v = find(key);
  if (!v) return 0;
  if (!v->is_array()) fail("'" + key + "' is " + v->dump() + ", expected a list");
  return v->size();
}

std::string HfConfig::first_of(std::initializer_list<const char*> keys) const {
  for (const char* k : keys)
    if (has(k)) return k;
  std::string names;
  for (const char* k : keys) names += (names.empty() ? "'" : " or '") + std::string(k) + "'";
  fail(names + " is missing");
}

void HfConfig::require_flag(const std::string& key, bool allowed, const std::string& why) const {
  if (flag(key, allowed) != allowed)
    fail("'" + key + "' = " + (allowed ? "false" : "true") + " is not supported: " + why);
}

HfConfig::Rope HfConfig::rope(double default_theta, const std::string& layer_type) const {
  Rope r;
  r.theta = default_theta;
  const json* params = find("rope_parameters");
  std::string where = "rope_parameters";
  if (params && params->is_object() && !layer_type.empty() && params->contains(layer_type)) {
    params = &(*params)[layer_type];
    where += "." + layer_type;
  }
  if (!params) {
    // transformers 4: rope_theta at the top, the scaling in rope_scaling.
    r.theta = number("rope_theta", default_theta);
    params = find("rope_scaling");
    where = "rope_scaling";
    if (has("partial_rotary_factor")) r.partial_rotary_factor = number("partial_rotary_factor", 1);
  }
  if (!params) return r;
  if (!params->is_object()) fail("'" + where + "' is " + params->dump() + ", expected an object");
  HfConfig p(std::make_shared<const json>(*params), path_ + " " + where);
  if (p.has("rope_theta")) r.theta = p.number("rope_theta", std::nullopt);
  r.type = p.has("rope_type") ? p.text("rope_type", std::nullopt) : p.text("type", "default");
  if (p.has("partial_rotary_factor"))
    r.partial_rotary_factor = p.number("partial_rotary_factor", std::nullopt);
  if (!(r.theta > 0)) fail(where + ": rope_theta must be positive");
  if (r.type == "default") return r;
  if (r.type == "linear") {
    r.factor = p.number("factor", std::nullopt);
    if (!(r.factor > 0)) fail(where + ": factor must be positive");
    return r;
  }
  if (r.type == "llama3") {
    r.factor = p.number("factor", std::nullopt);
    r.low_freq_factor = p.number("low_freq_factor", std::nullopt);
    r.high_freq_factor = p.number("high_freq_factor", std::nullopt);
    r.original_context = p.integer("original_max_position_embeddings", std::nullopt);
    if (!(r.factor > 0) || !(r.low_freq_factor > 0) || !(r.high_freq_factor > r.low_freq_factor))
      fail(where + ": llama3 scaling needs factor > 0 and high_freq_factor > low_freq_factor > 0");
    return r;
  }
  fail(where + ": rope_type '" + r.type +
       "' is not supported (supported: default, linear, llama3); running it as another would be "
       "wrong");
}

std::vector<std::string> HfConfig::layer_types(int n_layers) const {
  const json* v = find("layer_types");
  if (!v) return {};
  if (!v->is_array() || v->size() != size_t(n_layers))
    fail("'layer_types' must list one type per layer (" + std::to_string(n_layers) + ")");
  std::vector<std::string> out;
  for (const json& t : *v) {
    if (!t.is_string() || (t != "full_attention" && t != "sliding_attention"))
      fail("layer type " + t.dump() +
           " is not supported (supported: full_attention, sliding_attention)");
    out.push_back(t.get<std::string>());
  }
  return out;
}

HfWeights::HfWeights(const HfFolder& folder) : folder_(folder) {}

const Tensor& HfWeights::peek(const std::string& name) const {
  if (!folder_.sources.count(name)) throw Error(folder_.dir + ": missing tensor " + name);
  return folder_.tensor(name);  // names the file and dtype when TapML cannot read it
}

Tensor HfWeights::take(const std::string& name) {
  const Tensor& t = peek(name);
  if (t.dtype() != DType::F32 && t.dtype() != DType::F16 && t.dtype() != DType::BF16)
    throw Error(folder_.dir + ": " + name + " has dtype " + std::string(dtype_name(t.dtype())) +
                ", expected f32, f16 or bf16");
  taken_.insert(name);
  return t;
}

Tensor HfWeights::take_f32(const std::string& name, float add) {
  Tensor t = take(name);
  if (t.dtype() == DType::F32 && add == 0) return t;
  std::vector<float> v = t.to_f32();
  for (float& x : v) x += add;
  return Tensor::from_f32(t.shape(), v);
}

Tensor HfWeights::take_transposed(const std::string& name) {
  Tensor t = take(name);
  if (t.shape().rank() != 2) throw Error(folder_.dir + ": " + name + " is not a matrix");
  const int64_t rows = t.shape()[0], cols = t.shape()[1];
  const size_t es = dtype_size(t.dtype());
  Tensor out(t.dtype(), Shape{cols, rows});
  const std::byte* src = t.bytes();
  std::byte* dst = out.mutable_bytes();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      std::memcpy(dst + size_t(c * rows + r) * es, src + size_t(r * cols + c) * es, es);
  return out;
}

Tensor HfWeights::take_stacked(const std::vector<std::string>& names) {
  TAPML_REQUIRE(!names.empty(), "take_stacked: no names");
  std::vector<Tensor> parts;
  for (const std::string& n : names) parts.push_back(take(n));
  for (const Tensor& p : parts)
    if (p.dtype() != parts[0].dtype() || p.shape() != parts[0].shape())
      throw Error(folder_.dir + ": " + names[0] +
                  " and the tensors stacked with it differ in shape " + "or dtype");
  std::vector<int64_t> dims{int64_t(parts.size())};
  for (int64_t d : parts[0].shape().dims()) dims.push_back(d);
  Tensor out(parts[0].dtype(), Shape(dims));
  std::byte* dst = out.mutable_bytes();
  for (const Tensor& p : parts) {
    std::memcpy(dst, p.bytes(), p.nbytes());
    dst += p.nbytes();
  }
  return out;
}

void HfWeights::finish(const std::vector<std::string>& ignorable) const {
  std::string unused;
  int n = 0;
  for (const auto& [name, source] : folder_.sources) {
    if (taken_.count(name)) continue;
    bool ignore = false;
    for (const std::string& suffix : ignorable)
      ignore |= name.size() >= suffix.size() &&
                name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (ignore) continue;
    if (n++ < 3) unused += (unused.empty() ? "" : ", ") + name;
  }
  if (n)
    throw Error(folder_.dir + ": " + std::to_string(n) + " tensor" + (n == 1 ? "" : "s") +
                " that this family does not use (" + unused + (n > 3 ? ", ..." : "") +
                "): the config does not describe these weights, and running without them " +
                "would be wrong");
}

Tensor gather_rows(const Tensor& t, const std::vector<std::pair<int64_t, int64_t>>& blocks) {
  TAPML_REQUIRE(t.shape().rank() >= 1, "gather_rows: a scalar");
  const int64_t rows = t.shape()[0];
  const size_t row_bytes = rows ? t.nbytes() / size_t(rows) : 0;
  int64_t total = 0;
  for (auto [first, n] : blocks) {
    TAPML_REQUIRE(first >= 0 && n >= 0 && first + n <= rows, "gather_rows: block out of range");
    total += n;
  }
  std::vector<int64_t> dims = t.shape().dims();
  dims[0] = total;
  Tensor out(t.dtype(), Shape(dims));
  std::byte* dst = out.mutable_bytes();
  for (auto [first, n] : blocks) {
    std::memcpy(dst, t.bytes() + size_t(first) * row_bytes, size_t(n) * row_bytes);
    dst += size_t(n) * row_bytes;
  }
  return out;
}

Tensor llama3_rope_freqs(const HfConfig::Rope& r, int rope_dim) {
  std::vector<float> f(size_t(rope_dim / 2), 1.0f);
  for (int i = 0; i < rope_dim / 2; ++i) {
    if (r.type == "linear") {
      f[size_t(i)] = float(r.factor);
      continue;
    }
    double inv = std::pow(r.theta, -2.0 * i / rope_dim);
    double wavelen = 2 * std::numbers::pi / inv;
    double low = r.original_context / r.low_freq_factor;
    double high = r.original_context / r.high_freq_factor;
    if (wavelen < high) {
      f[size_t(i)] = 1;
    } else if (wavelen > low) {
      f[size_t(i)] = float(r.factor);
    } else {
      double smooth = (r.original_context / wavelen - r.low_freq_factor) /
                      (r.high_freq_factor - r.low_freq_factor);
      f[size_t(i)] = float(1.0 / ((1 - smooth) / r.factor + smooth));
    }
  }
  return Tensor::from_f32(Shape{rope_dim / 2}, f);
}

}  // namespace tapml

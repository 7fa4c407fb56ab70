#include "ops/op.h"

#include <cmath>

#include "core/error.h"

namespace tapml {

void Attrs::set(const std::string& name, double value) {
  for (auto& [k, v] : items_)
    if (k == name) {
      v = value;
      return;
    }
  items_.emplace_back(name, value);
}

bool Attrs::has(std::string_view name) const {
  for (auto& [k, v] : items_)
    if (k == name) return true;
  return false;
}

double Attrs::get(std::string_view name) const {
  for (auto& [k, v] : items_)
    if (k == name) return v;
  throw Error("missing attribute '" + std::string(name) + "'");
}

int64_t Attrs::get_int(std::string_view name) const {
  double v = get(name);
  TAPML_REQUIRE(std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 9e15,
                "attribute '" + std::string(name) + "' must be an integer");
  return int64_t(v);
}

namespace {

using Types = std::span<const TensorType>;

std::string desc(const TensorType& t) {
  return std::string(dtype_name(t.dtype)) + " " + t.shape.str();
}

// Prefixes the op's name; lazy like TAPML_REQUIRE, as these checks run on every call.
#define expect(ok, op, what) TAPML_REQUIRE(ok, std::string(op) + ": " + (what))

void expect_count(Types in, size_t n, std::string_view op) {
  expect(in.size() == n, op,
         "takes " + std::to_string(n) + " inputs, got " + std::to_string(in.size()));
}

void expect_matrix(const TensorType& t, std::string_view op, const char* name) {
  expect(t.shape.rank() == 2 && t.shape[0] >= 0 && t.shape[1] > 0, op,
         std::string(name) + " must be a matrix, got " + desc(t));
}

void expect_f32(const TensorType& t, std::string_view op, const char* name) {
  expect(t.dtype == DType::F32, op, std::string(name) + " must be f32, got " + desc(t));
}

void expect_weight(const TensorType& t, std::string_view op, const char* name) {
  expect(t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16, op,
         std::string(name) + " must be f32, f16 or bf16, got " + desc(t));
}

int64_t positive_attr(const Attrs& a, const char* name, std::string_view op) {
  int64_t v = a.get_int(name);
  expect(v > 0, op, std::string("attribute ") + name + " must be positive");
  return v;
}

std::vector<TensorType> infer_embedding(Types in, const Attrs&) {
  const char* op = "embedding";
  expect_count(in, 2, op);
  expect_matrix(in[0], op, "table");
  expect_weight(in[0], op, "table");
  expect(in[1].dtype == DType::I32 && in[1].shape.rank() == 1, op,
         "ids must be i32 [T], got " + desc(in[1]));
  return {{DType::F32, Shape{in[1].shape[0], in[0].shape[1]}}};
}

std::vector<TensorType> infer_rmsnorm(Types in, const Attrs& a) {
  const char* op = "rmsnorm";
  expect_count(in, 2, op);
  expect_matrix(in[0], op, "x");
  expect_f32(in[0], op, "x");
  expect_weight(in[1], op, "weight");
  expect(in[1].shape == Shape{in[0].shape[1]}, op,
         "weight " + desc(in[1]) + " does not fit x " + desc(in[0]));
  double eps = a.get("eps");
  expect(eps >= 0 && std::isfinite(eps), op, "eps must be finite and non-negative");
  return {in[0]};
}

std::vector<TensorType> infer_matmul(Types in, const Attrs&) {
  const char* op = "matmul";
  expect_count(in, 2, op);
  expect_matrix(in[0], op, "x");
  expect_f32(in[0], op, "x");
  expect_matrix(in[1], op, "w");
  expect_weight(in[1], op, "w");
  expect(in[0].shape[1] == in[1].shape[1], op,
         "x " + desc(in[0]) + " and w " + desc(in[1]) + " disagree on K");
  return {{DType::F32, Shape{in[0].shape[0], in[1].shape[0]}}};
}

std::vector<TensorType> infer_rope(Types in, const Attrs& a) {
  const char* op = "rope";
  expect_count(in, 2, op);
  expect_matrix(in[0], op, "x");
  expect_f32(in[0], op, "x");
  expect(in[1].dtype == DType::I32 && in[1].shape == Shape{in[0].shape[0]}, op,
         "pos must be i32 [T] matching x, got " + desc(in[1]));
  int64_t h = positive_attr(a, "n_heads", op), hd = positive_attr(a, "head_dim", op);
  int64_t rd = positive_attr(a, "rope_dim", op);
  expect(h * hd == in[0].shape[1], op, "n_heads*head_dim != width of x " + desc(in[0]));
  expect(rd <= hd && rd % 2 == 0, op, "rope_dim must be even and <= head_dim");
  int64_t pairing = a.get_int("pairing");
  expect(pairing == 0 || pairing == 1, op, "pairing must be 0 (adjacent) or 1 (neox)");
  expect(a.get("base") > 0, op, "base must be positive");
  return {in[0]};
}

std::vector<TensorType> infer_kv_store(Types in, const Attrs&) {
  const char* op = "kv_store";
  expect_count(in, 5, op);
  for (int i = 0; i < 4; ++i) {
    expect_matrix(in[i], op, i < 2 ? "cache" : "k/v");
    expect_f32(in[i], op, i < 2 ? "cache" : "k/v");
  }
  expect(in[0].shape == in[1].shape, op, "k_cache and v_cache differ");
  expect(in[2].shape == in[3].shape, op, "k and v differ");
  expect(in[2].shape[1] == in[0].shape[1], op,
         "k " + desc(in[2]) + " does not fit cache " + desc(in[0]));
  expect(in[2].shape[0] <= in[0].shape[0], op, "more rows than the cache holds");
  expect(in[4].dtype == DType::I32 && in[4].shape == Shape{1}, op, "pos must be i32 [1]");
  return {in[0], in[1]};
}

std::vector<TensorType> infer_attention(Types in, const Attrs& a) {
  const char* op = "attention";
  expect_count(in, 3, op);
  for (int i = 0; i < 3; ++i) {
    expect_matrix(in[i], op, i == 0 ? "q" : "k/v");
    expect_f32(in[i], op, i == 0 ? "q" : "k/v");
  }
  int64_t h = positive_attr(a, "n_heads", op), kv = positive_attr(a, "n_kv_heads", op);
  int64_t hd = positive_attr(a, "head_dim", op);
  expect(h % kv == 0, op, "n_heads must be a multiple of n_kv_heads");
  expect(in[0].shape[1] == h * hd, op, "q " + desc(in[0]) + " is not [T, n_heads*head_dim]");
  expect(in[1].shape == in[2].shape, op, "k and v differ");
  expect(in[1].shape[1] == kv * hd, op, "k " + desc(in[1]) + " is not [P, n_kv_heads*head_dim]");
  expect(in[1].shape[0] >= in[0].shape[0], op, "fewer keys than query rows");
  a.get("scale");
  return {in[0]};
}

std::vector<TensorType> infer_binary(Types in, const char* op) {
  expect_count(in, 2, op);
  expect_matrix(in[0], op, "a");
  expect_f32(in[0], op, "a");
  expect_f32(in[1], op, "b");
  expect(in[0].shape == in[1].shape, op, "shapes differ: " + desc(in[0]) + " vs " + desc(in[1]));
  return {in[0]};
}
std::vector<TensorType> infer_swiglu(Types in, const Attrs&) { return infer_binary(in, "swiglu"); }
std::vector<TensorType> infer_add(Types in, const Attrs&) { return infer_binary(in, "add"); }

int64_t no_reduction(Types, const Attrs&) { return 1; }
int64_t reduce_cols(Types in, const Attrs&) { return in[0].shape[1]; }
int64_t reduce_attention(Types in, const Attrs& a) {
  return in[1].shape[0] * a.get_int("head_dim");
}

const std::vector<OpDef>& catalog() {
  static const std::vector<OpDef> ops = {
      {"embedding", {"table", "ids"}, {"out"}, {}, {-1}, infer_embedding, no_reduction},
      {"rmsnorm", {"x", "weight"}, {"out"}, {"eps"}, {-1}, infer_rmsnorm, reduce_cols},
      {"matmul", {"x", "w"}, {"out"}, {}, {-1}, infer_matmul, reduce_cols},
      {"rope",
       {"x", "pos"},
       {"out"},
       {"n_heads", "head_dim", "rope_dim", "base", "pairing"},
       {-1},
       infer_rope,
       no_reduction},
      {"kv_store",
       {"k_cache", "v_cache", "k", "v", "pos"},
       {"k_cache", "v_cache"},
       {},
       {0, 1},
       infer_kv_store,
       no_reduction},
      {"attention",
       {"q", "k", "v"},
       {"out"},
       {"n_heads", "n_kv_heads", "head_dim", "scale"},
       {-1},
       infer_attention,
       reduce_attention},
      {"swiglu", {"gate", "up"}, {"out"}, {}, {-1}, infer_swiglu, no_reduction},
      {"add", {"a", "b"}, {"out"}, {}, {-1}, infer_add, no_reduction},
  };
  return ops;
}

}  // namespace

const std::vector<OpDef>& all_ops() { return catalog(); }

const OpDef& op_def(std::string_view name) {
  for (const OpDef& d : catalog())
    if (d.name == name) return d;
  std::string known;
  for (const OpDef& d : catalog()) known += (known.empty() ? "" : ", ") + d.name;
  throw Error("unknown op '" + std::string(name) + "' (known: " + known + ")");
}

}  // namespace tapml

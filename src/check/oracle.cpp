#include "check/oracle.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "ops/op.h"

namespace tapml {

namespace {

// The unit roundoff of the f32 format: the relative error of one correctly rounded result.
constexpr double kUnitF32 = 0x1p-24;

// S when every expected element is zero, so that E stays finite and any difference shows.
constexpr double kTinyScale = 1e-30;

// What an exp whose result falls below the smallest normal f32 (2^-126) may return instead:
// Vulkan and OpenCL let a kernel flush subnormals to zero, and fast exps clamp their argument
// near ln(2^-126). 16 x 2^-126 covers both.
constexpr double kSubnormalExpError = 0x1p-122;

// The bits run_host_call fills a fresh output with (a quiet NaN with payload 0xDEAD): an
// element that still holds them after the call was never written by the kernel.
constexpr uint32_t kUnwrittenBits = 0x7FC0DEAD;

// The floor constants c_op live in the catalog (OpDef::tolerance, with the reasons beside
// each op's definition); docs/oracle.md says how they were measured.
const OpTolerance& policy_of(Op op) { return op_def(op).tolerance; }

double unit_roundoff(DType t) {
  switch (t) {
    case DType::F32:
      return kUnitF32;
    case DType::F16:
      return 0x1p-11;
    case DType::BF16:
      return 0x1p-8;
    case DType::I32:
      return 0;
    default:  // block types are weights, never compared outputs
      return kUnitF32;
  }
}

double element(const Tensor& t, int64_t i) {
  if (t.dtype() == DType::I32) return double(t.data<int32_t>()[i]);
  return double(t.get_f32(i));
}

// The bit pattern of element i, for exact comparison of copies (-0 and +0 differ there).
uint32_t element_bits(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case DType::F32:
    case DType::I32: {
      uint32_t b;
      std::memcpy(&b, t.bytes() + size_t(i) * 4, 4);
      return b;
    }
    case DType::F16:
    case DType::BF16: {
      uint16_t b;
      std::memcpy(&b, t.bytes() + size_t(i) * 2, 2);
      return b;
    }
    default:
      throw Error("oracle: no element bits for a " + std::string(dtype_name(t.dtype())) +
                  " tensor");
  }
}

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// "3.2e-3": scientific with two significant digits and no exponent padding.
std::string sci(double v) {
  if (v == 0) return "0";
  if (!std::isfinite(v)) return v != v ? "nan" : (v > 0 ? "inf" : "-inf");
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1e", v);
  std::string s = buf;
  size_t e = s.find('e');
  std::string mant = s.substr(0, e), ex = s.substr(e + 1);
  bool neg = ex[0] == '-';
  size_t digits = ex.find_first_not_of("+-0");
  ex = digits == std::string::npos ? "0" : ex.substr(digits);
  if (ex == "0") return mant;
  return mant + "e" + (neg ? "-" : "") + ex;
}

// A multiple: "410x", "7.3x", "0.42x".
std::string times(double r) {
  if (!std::isfinite(r)) return "inf x";
  if (r >= 10) return fmt("%.0f", r) + "x";
  return fmt("%.2g", r) + "x";
}

// Enough digits that a cosine close to 1 does not print as 1.
std::string cosine_text(double c) {
  double gap = 1 - c;
  int digits = 6;
  if (gap > 0) digits = std::clamp(int(std::ceil(-std::log10(gap))) + 2, 6, 15);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, c);
  return buf;
}

std::string percent(double f) {
  if (f == 0) return "0%";
  if (f < 0.001) return fmt("%.2g", f * 100) + "%";
  return fmt("%.3g", f * 100) + "%";
}

// "[3, 17]": a flat row-major index as one index per dimension.
std::string index_text(const Shape& shape, int64_t flat) {
  std::vector<int64_t> idx(shape.rank());
  for (size_t d = shape.rank(); d-- > 0;) {
    int64_t n = shape[d] > 0 ? shape[d] : 1;
    idx[d] = flat % n;
    flat /= n;
  }
  std::string s = "[";
  for (size_t d = 0; d < idx.size(); ++d) s += (d ? ", " : "") + std::to_string(idx[d]);
  return s + "]";
}

std::string value_text(const Tensor& t, int64_t i) {
  if (t.dtype() == DType::I32) return std::to_string(t.data<int32_t>()[i]);
  float v = t.get_f32(i);
  char buf[80];
  if (t.dtype() == DType::F32)
    std::snprintf(buf, sizeof buf, "%.9g (0x%08x)", double(v), element_bits(t, i));
  else
    std::snprintf(buf, sizeof buf, "%.5g (0x%04x)", double(v), element_bits(t, i));
  return buf;
}

std::string output_label(Op op, size_t i) {
  std::string label = "output " + std::to_string(i);
  const OpDef& d = op_def(op);
  if (i < d.outputs.size()) label += " (" + d.outputs[i] + ")";
  return label;
}

// Compares a copy bit for bit. Returns "" when equal, else the detail.
std::string exact_difference(const Tensor& expected, const Tensor& actual) {
  const int64_t n = expected.numel();
  int64_t differ = 0, first = -1;
  const Shape& shape = expected.shape();
  const int64_t cols = shape.rank() >= 2 ? shape.back() : std::max<int64_t>(n, 1);
  int64_t row_first = -1, row_last = -1, rows_differ = 0, last_row_counted = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (element_bits(expected, i) == element_bits(actual, i)) continue;
    if (first < 0) first = i;
    ++differ;
    int64_t row = i / cols;
    if (row != last_row_counted) {
      ++rows_differ;
      last_row_counted = row;
    }
    if (row_first < 0) row_first = row;
    row_last = row;
  }
  if (!differ) return "";
  std::string d = "not bit-exact (a copy must be): " + std::to_string(differ) + " of " +
                  std::to_string(n) + " elements differ, first at " + index_text(shape, first) +
                  ": expected " + value_text(expected, first) + ", got " +
                  value_text(actual, first);
  if (shape.rank() >= 2) {
    d += "; " + std::to_string(rows_differ) + " of " + std::to_string(shape.rows()) +
         " rows differ (rows " + std::to_string(row_first) + ".." + std::to_string(row_last) + ")";
    // A row stored in the wrong place: say where the first differing row's contents went,
    // or where the contents found there came from. Only unambiguous matches are named (an
    // untouched zero row of a cache matches every other one).
    const int64_t rows = shape.rows();
    auto row_equal = [&](const Tensor& a, int64_t ra, const Tensor& b, int64_t rb) {
      for (int64_t c = 0; c < cols; ++c)
        if (element_bits(a, ra * cols + c) != element_bits(b, rb * cols + c)) return false;
      return true;
    };
    auto unique_match = [&](const Tensor& row_of, const Tensor& in) {
      int64_t found = -1;
      for (int64_t r = 0; r < rows; ++r) {
        if (r == row_first || !row_equal(row_of, row_first, in, r)) continue;
        if (found >= 0) return int64_t(-1);
        found = r;
      }
      return found;
    };
    const std::string row_name = std::to_string(row_first);
    if (int64_t r = unique_match(expected, actual); r >= 0)
      d += "; expected row " + row_name + " was found at row " + std::to_string(r);
    else if (int64_t r2 = unique_match(actual, expected); r2 >= 0)
      d += "; row " + row_name + " holds expected row " + std::to_string(r2);
  }
  return d;
}

}  // namespace

const char* check_name(CheckKind k) {
  switch (k) {
    case CheckKind::Pass:
      return "pass";
    case CheckKind::Shape:
      return "shape";
    case CheckKind::Dtype:
      return "dtype";
    case CheckKind::Guard:
      return "guard";
    case CheckKind::NaN:
      return "nan";
    case CheckKind::Inf:
      return "inf";
    case CheckKind::Numeric:
      return "numeric";
    case CheckKind::Exact:
      return "exact";
  }
  return "?";
}

ErrorMetrics measure(const Tensor& expected, const Tensor& actual, double tolerance) {
  TAPML_REQUIRE(expected.shape() == actual.shape(), "measure: shapes differ: expected " +
                                                        expected.shape().str() + ", actual " +
                                                        actual.shape().str());
  ErrorMetrics m;
  const int64_t n = expected.numel();
  m.elements = n;
  if (n == 0) return m;

  double scale = 0;
  for (int64_t i = 0; i < n; ++i) {
    double e = element(expected, i);
    if (std::isfinite(e)) scale = std::max(scale, std::fabs(e));
  }
  if (scale == 0) scale = kTinyScale;

  const double limit = tolerance * scale;
  double max_diff = -1, sum_d2 = 0, sum_e2 = 0, sum_a2 = 0, sum_ae = 0;
  int64_t out = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = element(expected, i), a = element(actual, i);
    if (!std::isfinite(e)) {
      // Only a result that reproduces the source's NaN or Inf is right there.
      bool same = std::isnan(e) ? std::isnan(a) : a == e;
      if (!same) {
        ++out;
        ++m.mismatched_special;
        if (m.first_special < 0) m.first_special = i;
      }
      continue;
    }
    if (!std::isfinite(a)) {
      ++out;
      if (std::isnan(a)) {
        if (m.nan++ == 0) m.first_nan = i;
        if (actual.dtype() == DType::F32 && element_bits(actual, i) == kUnwrittenBits)
          ++m.unwritten;
      } else {
        if (m.pos_inf + m.neg_inf == 0) m.first_inf = i;
        ++(a > 0 ? m.pos_inf : m.neg_inf);
      }
      continue;
    }
    const double d = std::fabs(a - e);
    if (d > max_diff) {
      max_diff = d;
      m.worst_index = i;
    }
    if (d > limit) ++out;
    if (e != 0) m.max_rel = std::max(m.max_rel, d / std::fabs(e));
    sum_d2 += d * d;
    sum_e2 += e * e;
    sum_a2 += a * a;
    sum_ae += a * e;
  }
  if (max_diff < 0) max_diff = 0;
  m.max_abs = max_diff;
  m.scale = scale;
  m.error = max_diff / scale;
  m.nmse = sum_d2 / std::max(sum_e2, kTinyScale * kTinyScale);
  if (sum_e2 == 0 && sum_a2 == 0)
    m.cosine = 1;
  else if (sum_e2 == 0 || sum_a2 == 0)
    m.cosine = 0;
  else
    m.cosine = sum_ae / (std::sqrt(sum_e2) * std::sqrt(sum_a2));
  m.frac_out = double(out) / double(n);
  return m;
}

bool TolerancePolicy::exact(Op op, DType dtype) {
  return dtype == DType::I32 || policy_of(op).exact;
}

double TolerancePolicy::factor(Op op, bool calibrated) {
  const OpTolerance& p = policy_of(op);
  return calibrated ? p.factor : p.uncalibrated_factor;
}

double TolerancePolicy::floor(Op op, DType dtype, int64_t reduction_length, bool calibrated) const {
  if (exact(op, dtype)) return 0;
  const double k = double(std::max<int64_t>(reduction_length, 1));
  return std::max(min_tolerance, factor(op, calibrated) * std::sqrt(k) * unit_roundoff(dtype));
}

double TolerancePolicy::tolerance(Op op, DType dtype, int64_t reduction_length,
                                  double noise) const {
  // A non-finite noise is a broken calibration, not a licence to pass anything.
  const bool calibrated = noise >= 0 && std::isfinite(noise);
  const double fl = floor(op, dtype, reduction_length, calibrated);
  if (fl == 0) return 0;
  return calibrated ? std::max(noise_multiple * noise, fl) : fl;
}

namespace {

OutputVerdict judge_output(const TolerancePolicy& policy, Op op, int64_t k, const Tensor& expected,
                           const Tensor& actual, bool guard_intact, double noise, double allowance,
                           const std::string& label) {
  OutputVerdict v;
  v.noise = noise >= 0 && std::isfinite(noise) ? noise : -1;
  auto fail = [&](CheckKind kind, std::string detail) {
    v.failed = kind;
    v.detail = label + ": " + detail;
    v.ratio = std::numeric_limits<double>::infinity();
    return v;
  };

  if (actual.dtype() != expected.dtype())
    return fail(CheckKind::Dtype, "dtype " + std::string(dtype_name(actual.dtype())) +
                                      ", expected " + std::string(dtype_name(expected.dtype())));
  if (actual.shape() != expected.shape())
    return fail(CheckKind::Shape,
                "shape " + actual.shape().str() + ", expected " + expected.shape().str());

  v.tolerance = policy.tolerance(op, expected.dtype(), k, noise);
  const bool allowed = allowance > 0 && v.tolerance > 0 && allowance > v.tolerance;
  if (allowance > 0) v.allowance = allowance;
  if (allowed) v.tolerance = allowance;
  v.metrics = measure(expected, actual, v.tolerance);
  const ErrorMetrics& m = v.metrics;
  if (v.noise > 0) v.noise_multiple = m.error / v.noise;

  if (!guard_intact)
    return fail(CheckKind::Guard, "bytes outside the tensor were written (out-of-bounds write)");

  const std::string of_n = " of " + std::to_string(m.elements) + " elements";
  if (m.nan > 0) {
    std::string d = std::to_string(m.nan) + " NaN" + of_n + ", first at " +
                    index_text(expected.shape(), m.first_nan) + " (expected " +
                    value_text(expected, m.first_nan) + ", got " + value_text(actual, m.first_nan) +
                    ")";
    if (m.unwritten)
      d += "; " + std::to_string(m.unwritten) + " hold the poison 0x7fc0dead: never written";
    return fail(CheckKind::NaN, d);
  }
  if (m.mismatched_special > 0 && std::isnan(element(expected, m.first_special)))
    return fail(CheckKind::NaN,
                "the source's NaN not reproduced: " + std::to_string(m.mismatched_special) + of_n +
                    " differ where the source is NaN or Inf, first at " +
                    index_text(expected.shape(), m.first_special) + " (got " +
                    value_text(actual, m.first_special) + ")");
  if (m.pos_inf + m.neg_inf > 0)
    return fail(CheckKind::Inf, std::to_string(m.pos_inf) + " +Inf and " +
                                    std::to_string(m.neg_inf) + " -Inf" + of_n + ", first at " +
                                    index_text(expected.shape(), m.first_inf) + " (expected " +
                                    value_text(expected, m.first_inf) + ", got " +
                                    value_text(actual, m.first_inf) + ")");
  if (m.mismatched_special > 0)
    return fail(CheckKind::Inf,
                "the source's Inf not reproduced: " + std::to_string(m.mismatched_special) + of_n +
                    " differ where the source is NaN or Inf, first at " +
                    index_text(expected.shape(), m.first_special) + " (expected " +
                    value_text(expected, m.first_special) + ", got " +
                    value_text(actual, m.first_special) + ")");

  if (v.tolerance == 0) {
    std::string d = exact_difference(expected, actual);
    if (!d.empty()) return fail(CheckKind::Exact, d);
    v.detail = label + ": bit-exact";
    return v;
  }

  v.ratio = m.error / v.tolerance;
  std::string d =
      "E " + sci(m.error) + " = " + times(v.ratio) + " tolerance " + sci(v.tolerance) + " (";
  if (v.noise > 0)
    d += "noise floor " + sci(v.noise) + ": " + times(v.noise_multiple) + " noise";
  else if (v.noise == 0)
    d += "noise floor 0";
  else
    d += "uncalibrated";
  if (allowed)
    d += (op == Op::Matmul ? "; 8-bit activation allowance " : "; exp allowance ") + sci(allowance);
  d += ")";
  if (m.worst_index >= 0)
    d += "; max abs " + sci(m.max_abs) + " at " + index_text(expected.shape(), m.worst_index);
  d += ", cosine " + cosine_text(m.cosine) + ", " + percent(m.frac_out) + " of elements out";
  v.detail = label + ": " + d;
  if (v.ratio > 1) v.failed = CheckKind::Numeric;
  return v;
}

}  // namespace

std::vector<double> allowance(const TolerancePolicy& policy, Op op, std::span<const Tensor> inputs,
                              std::span<const Tensor> expected) {
  std::vector<double> a = activation_allowance(policy, op, inputs, expected);
  return a.empty() ? exp_allowance(policy, op, inputs, expected) : a;
}

std::vector<double> exp_allowance(const TolerancePolicy& policy, Op op,
                                  std::span<const Tensor> inputs,
                                  std::span<const Tensor> expected) {
  if ((op != Op::Swiglu && op != Op::SigmoidGate) || expected.empty()) return {};
  // The sigmoid's argument and the factor it multiplies, per output element: swiglu's gate
  // and gate * up; sigmoid_gate's one gate per row and x.
  const std::vector<float> a = inputs[0].to_f32(), b = inputs[1].to_f32();
  const Tensor& out = expected[0];
  const int64_t cols =
      op == Op::SigmoidGate ? out.numel() / std::max<int64_t>(1, int64_t(b.size())) : 1;
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < out.numel(); ++i) {
    const double e = std::fabs(element(out, i));
    const double x = op == Op::Swiglu ? a[size_t(i)] : b[size_t(i / cols)];
    const double factor = op == Op::Swiglu ? double(a[size_t(i)]) * b[size_t(i)] : a[size_t(i)];
    if (!std::isfinite(e) || !std::isfinite(x) || !std::isfinite(factor)) continue;
    scale = std::max(scale, e);
    worst = std::max(worst, kUnitF32 * (3 + 2 * std::fabs(x)) / (1 + std::exp(x)) * e +
                                kSubnormalExpError * std::fabs(factor));
  }
  return {policy.exp_multiple * worst / (scale > 0 ? scale : kTinyScale)};
}

Verdict judge(const TolerancePolicy& policy, Op op, int64_t reduction_length,
              std::span<const Tensor> expected, std::span<const Tensor> actual,
              const std::vector<bool>& guards_intact, std::span<const double> noise,
              std::span<const double> allowance) {
  TAPML_REQUIRE(guards_intact.empty() || guards_intact.size() == expected.size(),
                "judge: " + std::to_string(guards_intact.size()) + " guard flags for " +
                    std::to_string(expected.size()) + " outputs");
  TAPML_REQUIRE(noise.empty() || noise.size() == expected.size(),
                "judge: " + std::to_string(noise.size()) + " noise floors for " +
                    std::to_string(expected.size()) + " outputs");
  TAPML_REQUIRE(allowance.empty() || allowance.size() == expected.size(),
                "judge: " + std::to_string(allowance.size()) + " allowances for " +
                    std::to_string(expected.size()) + " outputs");

  Verdict verdict;
  const size_t n = std::max(expected.size(), actual.size());
  int worst_failed = -1;
  for (size_t i = 0; i < n; ++i) {
    const std::string label = output_label(op, i);
    OutputVerdict v;
    if (i >= expected.size() || i >= actual.size()) {
      v.failed = CheckKind::Shape;
      v.ratio = std::numeric_limits<double>::infinity();
      v.detail = label + (i >= actual.size() ? ": missing from the result"
                                             : ": not an output of the source's call");
    } else {
      v = judge_output(policy, op, reduction_length, expected[i], actual[i],
                       guards_intact.empty() || guards_intact[i], noise.empty() ? -1 : noise[i],
                       allowance.empty() ? -1 : allowance[i], label);
    }
    verdict.worst_ratio = std::max(verdict.worst_ratio, v.ratio);
    if (v.failed != CheckKind::Pass) {
      verdict.pass = false;
      // The first failing output unless a later one is worse in ratio.
      if (worst_failed < 0 || v.ratio > verdict.outputs[size_t(worst_failed)].ratio)
        worst_failed = int(i);
    }
    verdict.outputs.push_back(std::move(v));
  }

  if (worst_failed >= 0) {
    verdict.failed = verdict.outputs[size_t(worst_failed)].failed;
    verdict.detail = verdict.outputs[size_t(worst_failed)].detail;
  } else {
    // A pass names its closest call: the output nearest its tolerance.
    size_t closest = 0;
    for (size_t i = 1; i < verdict.outputs.size(); ++i)
      if (verdict.outputs[i].ratio > verdict.outputs[closest].ratio) closest = i;
    if (!verdict.outputs.empty()) verdict.detail = verdict.outputs[closest].detail;
  }
  return verdict;
}

}  // namespace tapml

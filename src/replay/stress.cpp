#include "replay/stress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "backend/host_call.h"
#include "core/error.h"
#include "replay/replay.h"

namespace tapml {

namespace {

// The spread of a near-equal row against its offset: small enough that a one-pass variance
// (E[x^2] - E[x]^2 in f32) keeps no digit and every softmax weight is close to the others,
// large enough that the deviations still have f32 digits left after the offset is added.
constexpr double kNearEqualSpread = 1e-3;

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

bool positive_number(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(*out) && *out > 0;
}

bool is_attention_operand(Op op, size_t input) { return op == Op::Attention && input < 2; }

// The factor input `i` is scaled by at `level`: attention's q and k each by sqrt(level), so
// that the scores (their product) grow by the level like every other op's activations.
double input_factor(Op op, size_t input, double level) {
  return is_attention_operand(op, input) ? std::sqrt(level) : level;
}

bool stressable(const TestCase& t, size_t i) {
  const DType d = t.inputs[i].dtype();
  const bool weight = i < t.input_weights.size() && !t.input_weights[i].empty();
  return is_float(d) && !weight && !value_constrained(t.op, i);
}

// Rows along the innermost dimension (a vector is one row).
int64_t row_length(const Tensor& x) {
  return x.shape().rank() == 0 ? 1 : std::max<int64_t>(x.shape().back(), 1);
}

std::vector<float> scaled(const std::vector<float>& v, double factor) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = float(double(v[i]) * factor);
  return out;
}

// Each row becomes factor * (m + spread * (x - mean)), m its largest |x| with the sign of
// its mean: values equal to about three digits, at the row's own largest magnitude.
std::vector<float> near_equal(const std::vector<float>& v, int64_t n, double factor) {
  std::vector<float> out(v.size());
  for (size_t r = 0; r + size_t(n) <= v.size(); r += size_t(n)) {
    double sum = 0, big = 0;
    for (int64_t i = 0; i < n; ++i) {
      sum += v[r + size_t(i)];
      big = std::max(big, std::fabs(double(v[r + size_t(i)])));
    }
    const double mean = sum / double(n), offset = sum < 0 ? -big : big;
    for (int64_t i = 0; i < n; ++i)
      out[r + size_t(i)] =
          float(factor * (offset + kNearEqualSpread * (double(v[r + size_t(i)]) - mean)));
  }
  return out;
}

// Each column becomes factor * (mean + spread * (x - mean)): attention's keys near-equal to
// one another, so that every row of scores is near-equal around the score of the mean key.
std::vector<float> near_equal_columns(const std::vector<float>& v, int64_t cols, double factor) {
  const size_t n = size_t(cols), rows = v.size() / n;
  std::vector<float> out(v.size());
  for (size_t c = 0; c < n; ++c) {
    double sum = 0;
    for (size_t r = 0; r < rows; ++r) sum += v[r * n + c];
    const double mean = sum / double(rows);
    for (size_t r = 0; r < rows; ++r)
      out[r * n + c] = float(factor * (mean + kNearEqualSpread * (double(v[r * n + c]) - mean)));
  }
  return out;
}

// The carved rows repeated from the start until there are `rows`, the carved ones last:
// the queries keep their own keys at the end of a longer history.
Tensor longer_prefix(const Tensor& x, int64_t rows) {
  const int64_t p = x.shape()[0], c = x.shape()[1];
  const std::vector<float> v = x.to_f32();
  std::vector<float> out(size_t(rows * c));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t from = (r - (rows - p) % p + p) % p;
    std::copy_n(v.begin() + from * c, c, out.begin() + r * c);
  }
  return Tensor::from_f32_as(x.dtype(), {rows, c}, out);
}

bool all_finite(const Tensor& t) {
  if (!is_float(t.dtype())) return true;
  for (float v : t.to_f32())
    if (!std::isfinite(v)) return false;
  return true;
}

int64_t non_finite(const Tensor& t) {
  int64_t n = 0;
  if (!is_float(t.dtype())) return 0;
  for (float v : t.to_f32()) n += !std::isfinite(v);
  return n;
}

// The smallest and largest of the values added; [0, 0] for none.
struct Extent {
  double low = INFINITY, high = -INFINITY;
  void add(double v) {
    low = std::min(low, v);
    high = std::max(high, v);
  }
  void add(const Tensor& t) {
    for (float v : t.to_f32()) add(v);
  }
  ValueRange range() const { return low <= high ? ValueRange{low, high} : ValueRange{}; }
};

// The scores exp sees: scale * q.k over each row's visible keys, soft-capped when the call
// caps them.
ValueRange score_range(const TestCase& t) {
  const std::vector<float> q = t.inputs[0].to_f32(), k = t.inputs[1].to_f32();
  const int64_t T = t.inputs[0].shape()[0], P = t.inputs[1].shape()[0];
  const int64_t H = t.attrs.get_int("n_heads"), KV = t.attrs.get_int("n_kv_heads");
  const int64_t hd = t.attrs.get_int("head_dim"), window = int64_t(t.attrs.get_or("window", 0));
  const double scale = t.attrs.get("scale"), cap = t.attrs.get_or("softcap", 0);
  Extent scores;
  for (int64_t row = 0; row < T; ++row) {
    const int64_t last = P - T + row;
    const int64_t first = window > 0 ? std::max<int64_t>(0, last - window + 1) : 0;
    for (int64_t h = 0; h < H; ++h) {
      const float* qh = q.data() + (row * H + h) * hd;
      const int64_t kh = h / (H / KV);
      for (int64_t j = first; j <= last; ++j) {
        const float* kj = k.data() + (j * KV + kh) * hd;
        double s = 0;
        for (int64_t i = 0; i < hd; ++i) s += double(qh[i]) * kj[i];
        s *= scale;
        if (cap > 0) s = cap * std::tanh(s / cap);
        scores.add(s);
      }
    }
  }
  return scores.range();
}

}  // namespace

std::string StressVariant::name() const {
  switch (kind) {
    case Kind::Scaled:
      return "x" + number(level);
    case Kind::NearEqual:
      return "near-equal-x" + number(level);
    case Kind::LongPrefix:
      return "prefix-" + std::to_string(prefix);
  }
  return "?";
}

StressVariant StressVariant::parse(const std::string& text) {
  StressVariant v;
  double n = 0;
  const std::string near = "near-equal-x", prefix = "prefix-";
  if (text.rfind(near, 0) == 0 && positive_number(text.substr(near.size()), &n)) {
    v.kind = Kind::NearEqual;
    v.level = n;
  } else if (text.rfind(prefix, 0) == 0 && positive_number(text.substr(prefix.size()), &n) &&
             n == std::floor(n) && n <= 1e7) {
    v.kind = Kind::LongPrefix;
    v.prefix = int64_t(n);
  } else if (positive_number(text[0] == 'x' ? text.substr(1) : text, &n)) {
    v.level = n;
  } else {
    throw UsageError("--stress: '" + text +
                     "' is not a stress variant (xN: activations times N, e.g. x40; "
                     "near-equal-xN: rows of near-equal values at N times the range; "
                     "prefix-N: attention over N keys)");
  }
  return v;
}

std::vector<StressVariant> default_stress_variants() {
  return parse_stress_variants("x10,x40,x100,x1000,near-equal-x10,prefix-4096");
}

std::vector<StressVariant> parse_stress_variants(const std::string& list) {
  std::vector<StressVariant> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    StressVariant v = StressVariant::parse(list.substr(start, end - start));
    if (std::find(out.begin(), out.end(), v) == out.end()) out.push_back(v);
    start = end + 1;
  }
  return out;
}

bool value_constrained(Op op, size_t input) {
  return (op == Op::Rope && input == 2) || (op == Op::MoeFfn && input == 1);
}

const char* stressed_quantity(Op op) {
  switch (op) {
    case Op::Attention:
      return "score";
    case Op::Swiglu:
    case Op::SigmoidGate:
      return "gate";
    default:
      return "activation";
  }
}

double ValueRange::magnitude() const { return std::max(std::fabs(low), std::fabs(high)); }

std::string ValueRange::str() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "[%.3g, %.3g]", low, high);
  return buf;
}

ValueRange stressed_range(const TestCase& t) {
  if (t.op == Op::Attention) return score_range(t);
  Extent values;
  if (t.op == Op::Swiglu || t.op == Op::SigmoidGate) {
    values.add(t.inputs[t.op == Op::Swiglu ? 0 : 1]);
  } else {
    for (size_t i = 0; i < t.inputs.size(); ++i)
      if (stressable(t, i)) values.add(t.inputs[i]);
  }
  return values.range();
}

std::optional<StressCase> make_stress_case(const TestCase& carved, const StressVariant& v,
                                           Backend& source, Backend& plain_f32) {
  using Kind = StressVariant::Kind;
  StressCase s;
  s.test = carved;
  s.test.kept_because = "stress " + v.name();
  if (v.kind == Kind::LongPrefix) {
    if (carved.op != Op::Attention || carved.inputs[1].shape()[0] >= v.prefix) return {};
    for (size_t i : {size_t(1), size_t(2)})
      s.test.inputs[i] = longer_prefix(carved.inputs[i], v.prefix);
  } else {
    if (v.kind == Kind::NearEqual && carved.op == Op::MoeRoute) return {};
    bool changed = false;
    for (size_t i = 0; i < carved.inputs.size(); ++i) {
      if (!stressable(carved, i)) continue;
      const Tensor& x = carved.inputs[i];
      const double f = input_factor(carved.op, i, v.level);
      std::vector<float> values;
      if (v.kind == Kind::Scaled || (carved.op == Op::Attention && i != 1))
        values = scaled(x.to_f32(), f);
      else if (carved.op == Op::Attention)
        values = near_equal_columns(x.to_f32(), row_length(x), f);
      else
        values = near_equal(x.to_f32(), row_length(x), f);
      s.test.inputs[i] = Tensor::from_f32_as(x.dtype(), x.shape(), values);
      changed = true;
    }
    if (!changed) return {};
  }
  s.range = stressed_range(s.test);
  for (const Tensor& x : s.test.inputs)
    if (!all_finite(x)) {
      s.skipped = "the pushed inputs overflow their dtype";
      return s;
    }
  s.test.outputs =
      run_host_call(source, s.test.op, s.test.attrs, s.test.inputs, s.test.site.str()).outputs;
  const std::vector<Tensor> plain = calibrate_noise(s.test, plain_f32);
  for (size_t i = 0; i < s.test.outputs.size(); ++i) {
    const int64_t before = i < carved.outputs.size() ? non_finite(carved.outputs[i]) : 0;
    if (non_finite(s.test.outputs[i]) > before) {
      s.skipped = "the source's own output " + std::to_string(i) + " overflows here";
      return s;
    }
    if (i < plain.size() && non_finite(plain[i]) > before) {
      s.skipped = "f32 arithmetic itself overflows here (the noise reference's output " +
                  std::to_string(i) + " is not finite), so no f32 kernel can be held to it";
      return s;
    }
  }
  return s;
}

}  // namespace tapml

#include "carve/cover.h"

#include <algorithm>
#include <cstring>

#include "backend/host_call.h"
#include "core/error.h"

namespace tapml {

namespace {

// Twins stay small: a narrowed dimension keeps at most this many (four full 64-wide blocks
// and a tail), whatever the model's width.
constexpr int64_t kMostTwinWidth = 259;

// The first `size` entries of `x` along `axis`.
Tensor narrowed(const Tensor& x, size_t axis, int64_t size) {
  std::vector<int64_t> dims = x.shape().dims();
  TAPML_REQUIRE(axis < dims.size() && size >= 0 && size <= dims[axis],
                "cannot narrow " + describe({x.dtype(), x.shape()}) + " along axis " +
                    std::to_string(axis) + " to " + std::to_string(size));
  TAPML_REQUIRE(!is_block(x.dtype()) || axis + 1 < dims.size(),
                "cannot narrow the rows of a " + std::string(dtype_name(x.dtype())) +
                    " tensor: they are whole blocks");
  int64_t outer = 1;
  for (size_t i = 0; i < axis; ++i) outer *= dims[i];
  // The bytes of one entry along `axis`: everything inside it.
  const size_t unit =
      axis + 1 < dims.size()
          ? tensor_bytes(x.dtype(),
                         Shape(std::vector<int64_t>(dims.begin() + axis + 1, dims.end())))
          : tensor_bytes(x.dtype(), Shape{1});
  const int64_t from = dims[axis];
  dims[axis] = size;
  Tensor out(x.dtype(), Shape(dims));
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(out.mutable_bytes() + size_t(o * size) * unit, x.bytes() + size_t(o * from) * unit,
                size_t(size) * unit);
  return out;
}

// The outline of the twin narrowed_twin would make, or false when that call is not valid.
bool narrowed_outline(const TestOutline& t, const ClassGroup& g, int64_t size, TestOutline* out) {
  *out = t;
  for (auto [input, axis] : g.narrow) {
    if (input >= out->inputs.size()) continue;
    Shape& s = out->inputs[input].shape;
    if (size_t(axis) >= s.rank()) return false;
    if (is_block(out->inputs[input].dtype) && size_t(axis) + 1 == s.rank()) return false;
    s[size_t(axis)] = size;
  }
  try {
    out->outputs = infer_outputs(t.op, out->inputs, t.attrs);
  } catch (const Error&) {
    return false;
  }
  return true;
}

// The largest width below min(value, kMostTwinWidth + 1) at which `t` narrowed has every
// class of `missing`; 0 if none does.
int64_t twin_width(const TestOutline& t, const ClassGroup& g,
                   const std::vector<const ShapeClass*>& missing) {
  for (int64_t size = std::min(g.value(t) - 1, kMostTwinWidth); size >= 1; --size) {
    TestOutline n;
    if (!narrowed_outline(t, g, size, &n)) continue;
    if (std::all_of(missing.begin(), missing.end(),
                    [&](const ShapeClass* c) { return c->holds(n); }))
      return size;
  }
  return 0;
}

}  // namespace

CoverRunPlan plan_cover_run(const Coverage& coverage, int context) {
  CoverRunPlan p;
  const int longest = context - p.chunk - p.decode;  // the longest prefill that fits
  int length = 5;  // at least a full 4-row block and a partial one
  for (const OpCoverage& oc : coverage.ops)
    for (const GroupTally& gt : oc.groups)
      for (const ClassTally& ct : gt.classes) {
        if (!ct.cls->warn || ct.tests > 0 || ct.cls->fill != Fill::Run) continue;
        if (ct.cls->positions > context) continue;  // no deployment of the model meets it
        std::string what = std::string(op_name(oc.op)) + " " + ct.cls->name;
        if (ct.cls->run_length <= longest) {
          length = std::max(length, ct.cls->run_length);
          p.fills.push_back(what);
        } else {
          p.unreachable.push_back(what);
        }
      }
  if (p.fills.empty()) return p;
  if (length % 4 == 0) ++length;  // keeps the partial 4-row block
  p.prefill = std::min(length, longest);
  return p;
}

TestCase narrowed_twin(const TestCase& test, const ClassGroup& group, int64_t size,
                       Backend& source) {
  TestCase t = test;
  const int64_t from = group.value(outline(test));
  t.input_weights.resize(t.inputs.size());
  for (auto [input, axis] : group.narrow) {
    if (input >= t.inputs.size()) continue;
    t.inputs[input] = narrowed(test.inputs[input], size_t(axis), size);
    t.input_weights[input].clear();  // no longer the model's weight
  }
  t.outputs = run_host_call(source, t.op, t.attrs, t.inputs, t.site.str()).outputs;
  t.noise.clear();
  t.id = 0;
  t.kept_because = std::string(kTwinReason) + ": " + group.dim + " " + std::to_string(from) +
                   " -> " + std::to_string(size) + " of test " + std::to_string(test.id);
  return t;
}

std::vector<TestCase> cover_twins(const Corpus& corpus, const Coverage& coverage, Backend& source) {
  const std::vector<TestOutline> tests = corpus.outlines();
  std::vector<TestCase> out;
  for (const OpCoverage& oc : coverage.ops)
    for (const GroupTally& gt : oc.groups) {
      const ClassGroup& g = *gt.group;
      std::vector<const ShapeClass*> missing;
      for (const ClassTally& ct : gt.classes)
        if (ct.cls->warn && ct.tests == 0 && ct.cls->fill == Fill::Twin) missing.push_back(ct.cls);
      if (missing.empty() || g.narrow.empty()) continue;
      for (int64_t value : gt.seen) {
        std::vector<const TestOutline*> carved;
        for (const TestOutline& t : tests)
          if (t.op == oc.op && !is_twin(t.kept_because) && (!g.applies || g.applies(t)) &&
              g.value(t) == value)
            carved.push_back(&t);
        if (carved.empty()) continue;
        auto by_rows = [](const TestOutline* a, const TestOutline* b) {
          return rows_of(*a) < rows_of(*b);
        };
        // The fewest rows and the most: kernels often take another path for one row.
        const TestOutline* fewest = *std::min_element(carved.begin(), carved.end(), by_rows);
        const TestOutline* most = *std::max_element(carved.begin(), carved.end(), by_rows);
        const int64_t size = twin_width(*fewest, g, missing);
        if (size == 0) continue;
        out.push_back(narrowed_twin(corpus.load(fewest->id), g, size, source));
        if (rows_of(*most) != rows_of(*fewest))
          out.push_back(narrowed_twin(corpus.load(most->id), g, size, source));
      }
    }
  return out;
}

}  // namespace tapml

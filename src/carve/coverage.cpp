#include "carve/coverage.h"

#include <algorithm>
#include <cctype>

namespace tapml {

namespace {

using Test = const TestOutline&;
using Value = std::function<int64_t(Test)>;

// Dimension `axis` of input `input`, 0 when the test lacks it (an optional input left out).
int64_t dim_of(Test t, size_t input, size_t axis) {
  return input < t.inputs.size() && axis < t.inputs[input].shape.rank()
             ? t.inputs[input].shape[axis]
             : 0;
}
Value input_dim(size_t input, size_t axis) {
  return [=](Test t) { return dim_of(t, input, axis); };
}
bool weight_not_in_blocks(Test t, size_t input) {
  return input < t.inputs.size() && !is_block(t.inputs[input].dtype);
}

// A class whose absence is told; for Fill::Run, `positions` and `run_length` as ShapeClass says.
ShapeClass warned(std::string name, std::string reason, Fill fill, int positions, int run_length,
                  std::string how, std::function<bool(Test)> holds) {
  return {std::move(name), std::move(reason), true,           fill,
          positions,       run_length,        std::move(how), std::move(holds)};
}
ShapeClass shown(std::string name, std::string reason, Fill fill, std::function<bool(Test)> holds) {
  return {std::move(name), std::move(reason), false, fill, 0, 0, "", std::move(holds)};
}

// Every op runs in both phases, on one row and on several.
ClassGroup phases(Op op) {
  return {op,
          "phase",
          "",
          {},
          {},
          {},
          {warned("prefill", "the prompt's batch, the path for many rows at once", Fill::Run, 1, 2,
                  "any prompt", [](Test t) { return t.phase.is_prefill(); }),
           warned("decode", "one token per step: often a kernel of its own", Fill::Run, 2, 2,
                  "--steps larger than the prompt", [](Test t) { return !t.phase.is_prefill(); })}};
}
std::vector<ShapeClass> row_classes() {
  return {shown("T=1", "a single row: a decode step or a one-token prompt", Fill::Run,
                [](Test t) { return rows_of(t) == 1; }),
          warned("T>=2", "several rows: the batched path", Fill::Run, 2, 2,
                 "a prompt of 2 or more tokens", [](Test t) { return rows_of(t) >= 2; })};
}

// Lengths that are no multiple of 4, 8, 16, 32, 64: what is left after the last full
// vector, subgroup or tile. A model's widths are fixed, so only a twin fills them.
ClassGroup tails(Op op, std::string dim, Value value, std::vector<std::pair<size_t, int>> narrow,
                 std::function<bool(Test)> applies = {}) {
  static const std::pair<int, const char*> kUnits[] = {{4, "4-wide vector"},
                                                       {8, "8-wide vector (8 f32 lanes of AVX)"},
                                                       {16, "16-wide vector or subgroup"},
                                                       {32, "32-wide warp or tile"},
                                                       {64, "64-wide work-group or tile"}};
  ClassGroup g{op, dim + " tail", dim, value, std::move(applies), std::move(narrow), {}};
  for (auto [unit, name] : kUnits)
    g.classes.push_back(warned(dim + "%" + std::to_string(unit) + "!=0",
                               dim + " leaves a tail after its last full " + name, Fill::Twin, 0, 0,
                               "", [value, unit](Test t) { return value(t) % unit != 0; }));
  return g;
}

std::vector<ClassGroup> build_table() {
  const Value rows = rows_of;
  const std::vector<std::pair<size_t, int>> first_two_widths = {{0, 1}, {1, 1}};
  std::vector<ClassGroup> t;
  // Phase and rows first for every op, so that a table reads the same way for each.
  for (const OpDef& d : all_ops()) {
    t.push_back(phases(d.op));
    std::vector<ShapeClass> r = row_classes();
    if (d.op == Op::Matmul) {
      r.push_back(warned("T>=4", "a full 4-row block: kernels commonly tile rows by 4", Fill::Run,
                         4, 4, "a prompt of 4 or more tokens",
                         [](Test t) { return rows_of(t) >= 4; }));
      r.push_back(warned("T>4,T%4!=0", "full 4-row blocks and then a partial one", Fill::Run, 5, 5,
                         "a prompt of 5 or more tokens that is no multiple of 4",
                         [](Test t) { return rows_of(t) > 4 && rows_of(t) % 4 != 0; }));
      r.push_back(warned("T>64", "more rows than one 64-row tile of a large-tile GEMM", Fill::Run,
                         65, 65, "a prompt of 65 or more tokens",
                         [](Test t) { return rows_of(t) > 64; }));
    }
    t.push_back({d.op, "rows", "T", rows, {}, {}, std::move(r)});
  }

  // matmul x [T, K], w [N, K]
  t.push_back(tails(Op::Matmul, "K", input_dim(0, 1), {{0, 1}, {1, 1}},
                    [](Test t) { return weight_not_in_blocks(t, 1); }));
  t.push_back(tails(Op::Matmul, "N", input_dim(1, 0), {{1, 0}}));

  // attention q [T, H*hd], k/v [P, KV*hd]
  const Value keys = input_dim(1, 0);
  auto group_size = [](Test t) {
    int64_t kv = int64_t(t.attrs.get_or("n_kv_heads", 1));
    return kv > 0 ? int64_t(t.attrs.get_or("n_heads", 1)) / kv : 0;
  };
  auto head_dim = [](Test t) { return int64_t(t.attrs.get_or("head_dim", 0)); };
  t.push_back(
      {Op::Attention,
       "keys",
       "P",
       keys,
       {},
       {},
       {warned("P>T>1",
               "a prefill after cached rows, as in a chunked prefill or a second turn: query "
               "row t sits at P-T+t, not at t",
               Fill::Run, 3, 2, "a prompt prefilled in two chunks",
               [](Test t) { return dim_of(t, 0, 0) > 1 && dim_of(t, 1, 0) > dim_of(t, 0, 0); }),
        shown("P<=32", "no more keys than one 32-wide subgroup", Fill::Run,
              [keys](Test t) { return keys(t) <= 32; }),
        warned("P>32", "keys across more than one 32-wide subgroup", Fill::Run, 33, 29,
               "a decode step past position 32 (--steps 33 or more)",
               [keys](Test t) { return keys(t) > 32; }),
        warned("P>256", "more keys than one pass of a 256-wide work-group", Fill::Run, 257, 253,
               "a decode step past position 256 (--steps 257 or more)",
               [keys](Test t) { return keys(t) > 256; }),
        shown("P>1024", "more keys than one pass of a 1024-wide work-group: a long context",
              Fill::Run, [keys](Test t) { return keys(t) > 1024; })}});
  t.push_back({Op::Attention,
               "GQA",
               "H/KV",
               group_size,
               {},
               {},
               {shown("H/KV=1", "one query head per KV head (multi-head attention)", Fill::Model,
                      [group_size](Test t) { return group_size(t) == 1; }),
                warned("H/KV>1", "query head h reads KV head h/(H/KV): the grouped-query mapping",
                       Fill::Model, 0, 0,
                       "this model has as many KV heads as query heads, so no carve of it "
                       "reaches it (nor does --cover)",
                       [group_size](Test t) { return group_size(t) > 1; })}});
  t.push_back({Op::Attention,
               "head_dim",
               "hd",
               head_dim,
               {},
               {},
               {shown("hd%4!=0", "a head that is no whole number of 4-wide vectors", Fill::Model,
                      [head_dim](Test t) { return head_dim(t) % 4 != 0; }),
                shown("hd>128", "a head wider than one pass of a 128-wide work-group", Fill::Model,
                      [head_dim](Test t) { return head_dim(t) > 128; })}});
  t.push_back({Op::Attention,
               "options",
               "",
               {},
               {},
               {},
               {shown("window", "a sliding window hides keys i - j >= window", Fill::Model,
                      [](Test t) { return t.attrs.get_or("window", 0) > 0; }),
                shown("softcap", "scores capped by softcap * tanh(s / softcap)", Fill::Model,
                      [](Test t) { return t.attrs.get_or("softcap", 0) > 0; })}});

  // rope x [T, H*hd]: how the model rotates is the model's choice.
  t.push_back(
      {Op::Rope,
       "rotation",
       "",
       {},
       {},
       {},
       {shown("adjacent", "pairs (2i, 2i+1)", Fill::Model,
              [](Test t) { return t.attrs.get_or("pairing", 0) == 0; }),
        shown("neox", "pairs (i, i + rope_dim/2)", Fill::Model,
              [](Test t) { return t.attrs.get_or("pairing", 0) == 1; }),
        shown("partial", "rope_dim < head_dim: the rest of each head is copied", Fill::Model,
              [](Test t) { return t.attrs.get_or("rope_dim", 0) < t.attrs.get_or("head_dim", 0); }),
        shown("freq_factors", "per-pair frequency factors (Llama 3.1 scaling)", Fill::Model,
              [](Test t) { return t.inputs.size() > 2; })}});

  // The width of each row of the other ops.
  for (Op op : {Op::RmsNorm, Op::LayerNorm}) {
    t.push_back(tails(op, "D", input_dim(0, 1), {{0, 1}, {1, 0}}));
    const Value width = input_dim(0, 1);
    t.push_back({op,
                 "row width",
                 "D",
                 width,
                 {},
                 {},
                 {shown("D>256", "more than one pass of a 256-wide work-group over a row",
                        Fill::Model, [width](Test t) { return width(t) > 256; }),
                  shown("D>1024", "more than one pass of a 1024-wide work-group over a row",
                        Fill::Model, [width](Test t) { return width(t) > 1024; })}});
  }
  t.push_back(tails(Op::Embedding, "D", input_dim(0, 1), {{0, 1}},
                    [](Test t) { return weight_not_in_blocks(t, 0); }));
  t.push_back(tails(Op::KvStore, "C", input_dim(0, 1), {{0, 1}, {1, 1}, {2, 1}, {3, 1}}));
  t.push_back(tails(Op::Add, "D", input_dim(0, 1), first_two_widths));
  t.push_back(tails(Op::Mul, "N", input_dim(0, 1), first_two_widths));
  t.push_back(tails(Op::Swiglu, "F", input_dim(0, 1), first_two_widths));
  t.push_back(tails(Op::Bias, "N", input_dim(0, 1), {{0, 1}, {1, 0}}));
  for (Op op : {Op::Gelu, Op::Scale, Op::Softcap, Op::SigmoidGate})
    t.push_back(tails(op, op == Op::Gelu ? "F" : "N", input_dim(0, 1), {{0, 1}}));

  // Catalog order, phase and rows before the op's own groups.
  std::stable_sort(t.begin(), t.end(),
                   [](const ClassGroup& a, const ClassGroup& b) { return a.op < b.op; });
  return t;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string s;
  for (const std::string& p : parts) s += (s.empty() ? "" : sep) + p;
  return s;
}

// "1, 3" or, for many values, "1..263 (97 values)".
std::string values_text(const std::set<int64_t>& v) {
  if (v.size() > 8)
    return std::to_string(*v.begin()) + ".." + std::to_string(*v.rbegin()) + " (" +
           std::to_string(v.size()) + " values)";
  std::vector<std::string> parts;
  for (int64_t x : v) parts.push_back(std::to_string(x));
  return join(parts, ", ");
}

std::string dtypes_of(Test t) {
  const OpDef& d = op_def(t.op);
  std::vector<std::string> parts;
  for (size_t i = 0; i < t.inputs.size(); ++i)
    parts.push_back((i < d.inputs.size() ? d.inputs[i] : "in" + std::to_string(i)) + ":" +
                    std::string(dtype_name(t.inputs[i].dtype)));
  return join(parts, " ");
}

const char* fill_name(Fill f) {
  switch (f) {
    case Fill::Run:
      return "run";
    case Fill::Twin:
      return "twin";
    case Fill::Model:
      return "model";
  }
  return "?";
}

std::string default_how(const ShapeClass& c) {
  if (!c.how.empty()) return c.how;
  switch (c.fill) {
    case Fill::Run:
      return "a longer run of the model";
    case Fill::Twin:
      return "this model's shapes never have it; carve --cover adds narrowed twins of carved "
             "tests";
    case Fill::Model:
      return "only another model has it";
  }
  return "";
}

std::string count_text(const ClassTally& c) {
  if (c.tests == 0) return "-";
  if (c.twins == 0) return std::to_string(c.tests);
  return std::to_string(c.tests) + " (" + std::to_string(c.twins) +
         (c.twins > 1 ? " twins)" : " twin)");
}

}  // namespace

const std::vector<ClassGroup>& shape_class_groups() {
  static const std::vector<ClassGroup> table = build_table();
  return table;
}

int64_t rows_of(const TestOutline& t) {
  size_t input = t.op == Op::Embedding ? 1 : t.op == Op::KvStore ? 2 : 0;
  return dim_of(t, input, 0);
}

Coverage measure_coverage(std::span<const TestOutline> tests) {
  std::map<Op, std::vector<const TestOutline*>> by_op;
  for (const TestOutline& t : tests) by_op[t.op].push_back(&t);
  Coverage c;
  for (auto& [op, list] : by_op) {
    OpCoverage oc;
    oc.op = op;
    for (const TestOutline* t : list) {
      oc.tests++;
      oc.twins += is_twin(t->kept_because);
      oc.dtypes[dtypes_of(*t)]++;
    }
    for (const ClassGroup& g : shape_class_groups()) {
      if (g.op != op) continue;
      GroupTally gt;
      gt.group = &g;
      for (const ShapeClass& cls : g.classes) gt.classes.push_back({&cls, 0, 0});
      for (const TestOutline* t : list) {
        if (g.applies && !g.applies(*t)) continue;
        gt.applicable++;
        if (g.value) gt.seen.insert(g.value(*t));
        for (ClassTally& ct : gt.classes)
          if (ct.cls->holds(*t)) {
            ct.tests++;
            ct.twins += is_twin(t->kept_because);
          }
      }
      if (gt.applicable > 0) oc.groups.push_back(std::move(gt));
    }
    c.ops.push_back(std::move(oc));
  }
  return c;
}

int corpus_context(const std::map<std::string, std::string>& meta) {
  auto it = meta.find("context");
  if (it == meta.end()) return 0;
  try {
    return std::max(0, std::stoi(it->second));
  } catch (const std::exception&) {
    return 0;  // unreadable: as if unknown
  }
}

std::vector<CoverageGap> coverage_gaps(const Coverage& coverage, int context) {
  // A run class past the model's context is one no deployment meets.
  auto beyond = [context](const ShapeClass& c) {
    return c.fill == Fill::Run && context > 0 && c.positions > context;
  };
  struct Missing {
    const OpCoverage* op;
    const GroupTally* group;
    std::vector<const ShapeClass*> classes;
  };
  // A group of tail classes is one gap per op (its missing moduli together); any other
  // class is a gap of its own. Gaps of the same classes in several ops are told once.
  std::vector<std::pair<std::string, std::vector<Missing>>> merged;
  for (const OpCoverage& oc : coverage.ops)
    for (const GroupTally& gt : oc.groups) {
      std::vector<std::vector<const ShapeClass*>> gaps;
      for (const ClassTally& ct : gt.classes) {
        if (!ct.cls->warn || ct.tests > 0) continue;
        if (ct.cls->fill == Fill::Twin && !gaps.empty() && gaps.back()[0]->fill == Fill::Twin)
          gaps.back().push_back(ct.cls);
        else
          gaps.push_back({ct.cls});
      }
      for (auto& classes : gaps) {
        std::vector<std::string> names;
        for (const ShapeClass* c : classes) names.push_back(c->name);
        std::string key = gt.group->title + "\n" + join(names, ",");
        auto it = std::find_if(merged.begin(), merged.end(),
                               [&](const auto& m) { return m.first == key; });
        if (it == merged.end()) it = merged.insert(merged.end(), {key, {}});
        it->second.push_back({&oc, &gt, std::move(classes)});
      }
    }
  std::vector<CoverageGap> out;
  for (auto& [key, list] : merged) {
    CoverageGap g;
    const Missing& first = list.front();
    g.group = first.group->group;
    g.classes = first.classes;
    const ShapeClass& c = *g.classes.front();
    g.warning = c.fill == Fill::Run && !beyond(c);
    std::vector<std::string> ops, names, seen;
    for (const Missing& m : list) {
      g.ops.push_back(m.op->op);
      ops.push_back(std::string(op_name(m.op->op)));
      if (!g.group->dim.empty())
        seen.push_back((list.size() > 1 ? std::string(op_name(m.op->op)) + " " : "") +
                       values_text(m.group->seen));
    }
    for (const ShapeClass* x : g.classes) names.push_back(x->name);
    // Tails nest (no multiple of 4 is a multiple of 64): the first and last say it.
    if (names.size() > 2) names = {names.front() + " .. " + names.back()};
    std::string hint = beyond(c) ? "it takes " + std::to_string(c.positions) +
                                       " positions, more than the model's context of " +
                                       std::to_string(context) + ": a deployment does not meet it"
                       : c.fill == Fill::Run ? "reached by " + default_how(c) + ", or carve --cover"
                                             : default_how(c);
    g.text = join(ops, ", ") + ": no test with " + join(names, ", ") + " (" + c.reason + ")" +
             (seen.empty() ? "" : "; " + g.group->dim + " seen: " + join(seen, "; ")) + ". " +
             char(std::toupper(static_cast<unsigned char>(hint[0]))) + hint.substr(1) + ".";
    out.push_back(std::move(g));
  }
  std::stable_partition(out.begin(), out.end(), [](const CoverageGap& g) { return g.warning; });
  return out;
}

std::string coverage_table(const Coverage& coverage) {
  std::string s = "coverage: tests per shape class ('-': none)\n";
  for (const OpCoverage& oc : coverage.ops) {
    s += "  " + std::string(op_name(oc.op)) + ": " + std::to_string(oc.tests) + " tests";
    if (oc.twins) s += " (" + std::to_string(oc.twins) + " synthetic twins)";
    std::vector<std::string> dtypes;
    for (auto& [d, n] : oc.dtypes) dtypes.push_back(d + " " + std::to_string(n));
    s += "; " + join(dtypes, ", ") + "\n";
    for (const GroupTally& gt : oc.groups) {
      std::string line = "    " + gt.group->title;
      line.resize(std::max<size_t>(line.size() + 1, 16), ' ');
      std::vector<std::string> cells;
      for (const ClassTally& ct : gt.classes) cells.push_back(ct.cls->name + " " + count_text(ct));
      line += join(cells, "  ");
      if (!gt.group->dim.empty())
        line += "   (" + gt.group->dim + ": " + values_text(gt.seen) + ")";
      s += line + "\n";
    }
  }
  return s;
}

std::string gaps_text(const std::vector<CoverageGap>& gaps) {
  std::string s;
  for (const CoverageGap& g : gaps)
    s += std::string(g.warning ? "warning: " : "note: ") + g.text + "\n";
  return s;
}

nlohmann::json coverage_json(const Coverage& coverage, int context) {
  using json = nlohmann::json;
  json ops = json::array();
  for (const OpCoverage& oc : coverage.ops) {
    json groups = json::array();
    for (const GroupTally& gt : oc.groups) {
      json classes = json::array();
      for (const ClassTally& ct : gt.classes)
        classes.push_back({{"class", ct.cls->name},
                           {"tests", ct.tests},
                           {"twins", ct.twins},
                           {"reason", ct.cls->reason},
                           {"warn", ct.cls->warn},
                           {"fill", fill_name(ct.cls->fill)}});
      json g = {{"group", gt.group->title}, {"applicable", gt.applicable}, {"classes", classes}};
      if (!gt.group->dim.empty()) {
        g["dim"] = gt.group->dim;
        g["seen"] = gt.seen;
      }
      groups.push_back(std::move(g));
    }
    ops.push_back({{"op", std::string(op_name(oc.op))},
                   {"tests", oc.tests},
                   {"twins", oc.twins},
                   {"dtypes", oc.dtypes},
                   {"groups", groups}});
  }
  json gaps = json::array();
  for (const CoverageGap& g : coverage_gaps(coverage, context)) {
    json ops_of = json::array(), names = json::array();
    for (Op op : g.ops) ops_of.push_back(std::string(op_name(op)));
    for (const ShapeClass* c : g.classes) names.push_back(c->name);
    gaps.push_back({{"severity", g.warning ? "warning" : "note"},
                    {"ops", ops_of},
                    {"group", g.group->title},
                    {"classes", names},
                    {"text", g.text}});
  }
  json out = {{"ops", ops}, {"gaps", gaps}};
  if (context > 0) out["context"] = context;
  return out;
}

}  // namespace tapml

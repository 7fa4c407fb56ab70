// Corpus coverage: which shape classes of each op a corpus exercises, and which it lacks.
// A shape class is a kind of call that kernels commonly special-case: one row or a partial
// 4-row block, a length that is no multiple of 4..64 (a vector or tile tail), a decode step
// over more keys than one work-group pass, grouped-query attention, ... The one table of them
// (shape_class_groups()) gives each class a one-line reason and says what can supply it when
// a corpus lacks it:
//   Fill::Run    a longer or chunked prompt: a deployment of the model meets it, so a corpus
//                without it gets a warning (carve --cover adds such a run), unless it lies
//                beyond the model's context (then a note);
//   Fill::Twin   a shape the model never produces (its dimensions are fixed): a note, and
//                carve --cover adds twins of carved tests narrowed to it (carve/cover.h);
//   Fill::Model  only another model has it (GQA in a model with as many KV heads as heads,
//                another dtype): a note.
// Coverage is computed from test outlines (Corpus::outlines()), so it works on any corpus,
// however old, without reading tensor values.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "carve/test_case.h"

namespace tapml {

enum class Fill { Run, Twin, Model };

struct ShapeClass {
  std::string name;    // "T>=4", "K%4!=0", "decode"
  std::string reason;  // "a full 4-row block: kernels commonly tile rows by 4"
  bool warn = false;   // whether a corpus lacking it is told so
  Fill fill = Fill::Model;
  // Fill::Run: the fewest positions (prompt and decode steps) a run needs to reach it, and the
  // prefill length of the cover run (carve/cover.h) that reaches it.
  int positions = 0;
  int run_length = 0;
  // What reaches it, for the message about a corpus that lacks it; empty: said by `fill`.
  std::string how;
  std::function<bool(const TestOutline&)> holds;
};

// Classes of one op that classify the same thing (its rows, its reduction length, ...).
struct ClassGroup {
  Op op;
  std::string title;  // "rows", "K tail"
  std::string dim;    // the dimension the group classifies ("T", "K"), or "" for none
  std::function<int64_t(const TestOutline&)> value;  // that dimension of a test
  // The tests the group applies to; all when empty (a K tail only where the weight is not
  // in quantized blocks, whose K is a whole number of blocks).
  std::function<bool(const TestOutline&)> applies;
  // Fill::Twin: every (input, axis) that carries `dim`, cut together to narrow it.
  std::vector<std::pair<size_t, int>> narrow;
  std::vector<ShapeClass> classes;
};

// Every class of every op, in catalog order.
const std::vector<ClassGroup>& shape_class_groups();

// The rows T of a call as kernels see them (the ids of embedding, the new rows of kv_store,
// the first input's rows otherwise).
int64_t rows_of(const TestOutline& t);

struct ClassTally {
  const ShapeClass* cls = nullptr;
  int64_t tests = 0, twins = 0;  // tests exercising it; twins among them
};
struct GroupTally {
  const ClassGroup* group = nullptr;
  int64_t applicable = 0;  // tests of the op the group applies to
  std::set<int64_t> seen;  // values of its dimension among them
  std::vector<ClassTally> classes;
};
struct OpCoverage {
  Op op = Op::Add;
  int64_t tests = 0, twins = 0;
  std::map<std::string, int64_t> dtypes;  // "x:f32 w:f16" -> tests
  std::vector<GroupTally> groups;         // those that apply to some test
};
struct Coverage {
  std::vector<OpCoverage> ops;  // the ops the corpus has tests of, in catalog order
};

Coverage measure_coverage(std::span<const TestOutline> tests);

// A class (or a group's tail classes) that some ops lack and the table warns about.
struct CoverageGap {
  bool warning = false;  // Fill::Run within the context: a warning; otherwise a note
  std::vector<Op> ops;
  const ClassGroup* group = nullptr;  // of the first op
  std::vector<const ShapeClass*> classes;
  std::string text;  // "matmul: no test with T>=4 (...); T seen: 1, 3. ..."
};
// Warnings first, then notes. `context`: the model's context length (the corpus's meta
// "context"); a Fill::Run class that needs more positions is a note. 0: unknown.
std::vector<CoverageGap> coverage_gaps(const Coverage& coverage, int context = 0);

// The table: per op, a line per group with each class's count of tests ('-': none).
std::string coverage_table(const Coverage& coverage);
// "warning: TEXT" and "note: TEXT" lines.
std::string gaps_text(const std::vector<CoverageGap>& gaps);
// {"ops": [{op, tests, twins, dtypes, groups: [{group, dim, seen, classes: [...]}]}],
//  "gaps": [{severity, ops, group, classes, text}]}
nlohmann::json coverage_json(const Coverage& coverage, int context = 0);
// The context a corpus was carved with (its meta "context"), 0 when it does not say.
int corpus_context(const std::map<std::string, std::string>& meta);

}  // namespace tapml

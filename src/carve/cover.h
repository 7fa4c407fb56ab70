// carve --cover: what is added to a carve to fill the shape classes it missed
// (carve/coverage.h), in two honest kinds:
//   a cover run   the model run once more on a token sequence of the carve itself (a prompt
//                 and its greedy continuation): a prefill of L tokens, a second prefill chunk
//                 of 3 and one decode step. Every call is real; the recorder prunes them as
//                 any other. It reaches the Fill::Run classes: multi-row blocks and their
//                 tails, a prefill after cached rows, decode over a long prefix.
//   twins         copies of carved tests narrowed along one dimension the model fixes (a
//                 reduction of 64 cut to 63), keeping the real values of the kept part, their
//                 expected outputs computed on the source backend. They reach the Fill::Twin
//                 classes (tails of widths no shape of the model has) and are marked as twins
//                 (kept_because "twin: ...") so that replays report them apart.
// Neither can create what only another model has (grouped-query attention in a model with as
// many KV heads as heads, another dtype): those stay notes.
#pragma once
#include <string>
#include <vector>

#include "backend/backend.h"
#include "carve/corpus.h"
#include "carve/coverage.h"

namespace tapml {

struct CoverRunPlan {
  int prefill = 0;                       // 0: no run is needed
  int chunk = 3;                         // rows of the second prefill chunk
  int decode = 1;                        // decode steps after it
  std::vector<std::string> fills;        // "matmul T>=4", the missing classes it is for
  std::vector<std::string> unreachable;  // missing classes the run does not fit in the context
  int positions() const { return prefill + chunk + decode; }
};

// The cover run that reaches every missing, warned Fill::Run class of `coverage` that a run
// within the model's context of `context` positions can reach; those the run's own length
// (prefill, chunk, decode) does not fit are named unreachable.
CoverRunPlan plan_cover_run(const Coverage& coverage, int context);

// A twin of `test` with dimension `group.dim` narrowed to `size` (the kept part of every
// tensor that carries it), its outputs computed on `source` and its noise left uncalibrated.
// Error when the narrowed call is not valid for the catalog.
TestCase narrowed_twin(const TestCase& test, const ClassGroup& group, int64_t size,
                       Backend& source);

// Twins that fill the missing, warned Fill::Twin classes of `coverage`: for each such group
// and each value of its dimension the carve has, up to two carved tests (the fewest rows and
// the most) narrowed to the largest size below min(value, 260) that has every missing tail.
// The outputs come from `source`; storing (and calibrating) them is the caller's.
std::vector<TestCase> cover_twins(const Corpus& corpus, const Coverage& coverage, Backend& source);

}  // namespace tapml

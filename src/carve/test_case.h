// One carved operator test: an op call recorded on the source platform with its exact
// inputs (taken before the call) and outputs, and where in the model it happened.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "model/site.h"
#include "ops/op.h"

namespace tapml {

struct TestCase {
  int64_t id = 0;  // corpus row id (0 until stored)
  Op op = Op::Add;
  Attrs attrs;
  Site site;    // {3, "attn_q"}
  Phase phase;  // prefill, decode_7, ...
  int64_t call_index = 0;
  int prompt_index = 0;  // which carve prompt produced it
  std::vector<Tensor> inputs;
  std::vector<Tensor> outputs;  // the source platform's (ref's) results
  // Per input: the model weight it is ("blk.0.attn_q.weight"), or "" for activations.
  std::vector<std::string> input_weights;
  // Per output: the noise floor, i.e. the oracle's error measure of a plain-f32 computation
  // of this very call against the source's f64-accumulating result. -1 = not calibrated.
  std::vector<double> noise;
  // Why pruning kept it: "first", "max_input", "late_decode", ...
  std::string kept_because;

  // op, attributes, and the dtype and shape of every tensor: calls with equal signatures
  // are the same test up to values.
  std::string signature() const;
};

std::string call_signature(Op op, const Attrs& attrs, const std::vector<Tensor>& inputs,
                           const std::vector<Tensor>& outputs);

// What a test is without its values: enough to say which shapes it exercises
// (carve/coverage.h), and cheap to read for a whole corpus.
struct TestOutline {
  int64_t id = 0;
  Op op = Op::Add;
  Attrs attrs;
  Site site;
  Phase phase;
  int prompt_index = 0;
  std::vector<TensorType> inputs, outputs;
  std::string kept_because;
};
TestOutline outline(const TestCase& t);

// A synthetic twin is a test made from a carved one (`tapml carve --cover`: real values,
// narrowed to a shape the model never produced) rather than recorded. Its kept_because
// starts with this word, then says what it was made from: "twin: K 64 -> 63 of test 17".
inline constexpr std::string_view kTwinReason = "twin";
bool is_twin(std::string_view kept_because);

}  // namespace tapml

// Runs one op call on any backend with host tensors in and out: uploads the inputs, makes
// the outputs, runs, reads everything back, frees the buffers. Used wherever a single call
// is executed outside a model run (carving's noise calibration, replay, isolated
// comparison). Every output buffer is surrounded by guard bytes, and a fresh output is
// first filled with a poison pattern (NaN bits), so an out-of-bounds write or an output
// element never written shows up in the result.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"

namespace tapml {

// Bytes of guard before and after every tensor run_host_call places; tensors start at this
// offset in their buffers.
inline constexpr size_t kHostCallGuardBytes = 256;

struct HostCallResult {
  std::vector<Tensor> outputs;
  // Per output: true when the guard bytes before and after it are untouched.
  std::vector<bool> guards_intact;
};

// Validates the call against the catalog (Error naming the problem) and the backend's
// supports() (Error with its reason) before running. In-place outputs are returned as the
// final contents of the input they overwrite.
//
// `resident`, when given, has one entry per input: a tensor already on the backend (a model
// weight kept there) to use instead of uploading that input, or nullopt. An in-place output's
// input must not be resident (it would be overwritten).
// The backend's answer to "could you run this?" for the call as run_host_call lays it out
// (each tensor in a buffer of its own after the guard bytes, in-place outputs sharing their
// input's), asked from the types alone, before any bytes move. Error when the call is not
// valid for the catalog; a supports() that throws counts as yes, so that running the call
// reports what is wrong.
Support host_call_support(const Backend& backend, Op op, const Attrs& attrs,
                          const std::vector<TensorType>& inputs, const std::string& site = "");

HostCallResult run_host_call(Backend& backend, Op op, const Attrs& attrs,
                             const std::vector<Tensor>& inputs, const std::string& site = "",
                             const std::vector<std::optional<DeviceTensor>>* resident = nullptr);

}  // namespace tapml

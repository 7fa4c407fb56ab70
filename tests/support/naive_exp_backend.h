// A backend with the textbook exp formulas of a first port, written as real kernels: `cpu`
// for every op except attention (softmax without subtracting the row's max: exp(s) / sum of
// exp(s)), swiglu and sigmoid_gate (sigmoid as exp(x) / (1 + exp(x))), all in f32. They are
// right while exp's argument stays below ln(FLT_MAX) ~ 88.7, as every call of stories260K
// does (scores up to about 22, gates up to about 5), and give Inf / Inf = NaN past it: the
// carved tests pass and only values of a larger model's range, such as stress variants,
// expose them.
#pragma once
#include <memory>

#include "backend/backend.h"

namespace tapml::testing {

std::unique_ptr<Backend> make_naive_exp_backend();
// Registers it as the URI scheme "naive_exp" (idempotent), for code that opens backends by URI.
void register_naive_exp_backend();

}  // namespace tapml::testing

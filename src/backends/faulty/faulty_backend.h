// The faulty backend: wraps a correct backend and injects one realistic kernel bug, so that
// carving, replay, the oracle and migration can be tested and demonstrated against bugs
// whose cause is known.
//
// URI: faulty:INNER?fault=NAME[&site=REGEX]
//   INNER  the wrapped backend's URI without a query (the query belongs to the wrapper), so
//          the inner backend runs with its defaults ("cpu" uses all hardware threads).
//   fault  one of the faults below (required).
//   site   a regular expression (RE2 syntax) searched in OpCall::site; default: every site.
// Calls whose op the fault does not touch, or whose site does not match, go to the inner
// backend unchanged; buffers are the inner backend's (ids included); supports() is the
// inner backend's answer.
//
// Faults (T rows, K reduction length, H query heads, KV key/value heads):
//   softmax_f16   attention: q.k accumulated in f16 before the scale is applied, and every
//                 score, the running max, each exp and the sum rounded to f16; a raw dot
//                 product beyond 65504 becomes Inf and the row's output NaN.
//   rope_pairing  rope: runs with the other pairing (adjacent <-> neox).
//   gqa_map       attention: query head h reads KV head h % KV instead of h / (H / KV);
//                 (h + 1) % KV when KV == H. No effect when KV == 1.
//   kv_offset     kv_store: from pos >= 2 on, stores at pos + 1 (clamped to pos + T <= S,
//                 so it never writes outside the cache); pos 0 and 1 store correctly.
//   matmul_tail   matmul: the last K % 8 products of every dot product are dropped.
//   rmsnorm_eps   rmsnorm: epsilon ignored (eps = 0).
//   silu_approx   swiglu: silu(x) ~ x * clamp(0.5 + x/4, 0, 1) (a hard sigmoid).
//   exp_overflow  an exp whose result is held in half precision (a fast shader exp), so
//                 inputs above ln(65504) ~ 11.09 give Inf. attention: softmax without
//                 subtracting the row max, so a scaled score above ~11.09 gives Inf and the
//                 output NaN; swiglu: sigmoid as exp(x) / (1 + exp(x)), so x above ~11.09
//                 gives Inf / Inf = NaN.
//   gelu_form     gelu: the other form (erf <-> tanh approximation), as when a family's
//                 gelu_pytorch_tanh is read as gelu.
//   layernorm_mean  layernorm: the mean is never subtracted: x / sqrt(var + eps) * w.
//   bias_dropped  bias: not added (the output is x).
//   rope_full_head  rope: rotates all head_dim dimensions where the call rotates rope_dim
//                 (partial rotary ignored); no effect when rope_dim == head_dim.
//   window_off_by_one  attention: a sliding window lets window + 1 keys through; no effect
//                 without a window.
//   softcap_missing  attention: the score cap is left out; softcap: the output is its input.
//   router_axis   moe_route: the softmax runs over the tokens (down each expert's column)
//                 instead of over the experts; the top k are then chosen from that.
//   moe_norm      moe_route: the chosen weights renormalized when they should not be, or
//                 not when they should (norm flipped).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/registry.h"

namespace tapml {

// The fault names the URI accepts, in the order documented above.
const std::vector<std::string>& known_faults();
// The ops a fault changes; throws Error for an unknown fault.
std::vector<Op> fault_ops(const std::string& fault);

// Opens the inner backend through the registry, so the inner scheme must be registered.
std::unique_ptr<Backend> make_faulty_backend(const BackendUri& uri);

}  // namespace tapml

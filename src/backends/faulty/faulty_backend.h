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
//   rope_position rope: every position one late (pos + 1), as a kernel that indexes its angle
//                 table from 1. q and k are both rotated one step too far, so q.k and hence
//                 attention are unchanged: every rope call is wrong, the model's output is
//                 not (latent: it shows wherever rotated values are used other than in q.k).
// Quantized-weight faults act on matmul (weight) and embedding (table) calls whose block type
// they name; other types, like other ops, go to the inner backend. Each is one bug in
// dequantization, everything else as ggml decodes; matmul then sums in f64. Legacy blocks
// hold 32 elements, K-quant super-blocks 256 (core/quant.h).
//   nibble_order  Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K: the two 4-bit values of each byte of qs
//                 swapped: element j of a block read from the high nibble of qs[j] and j + 16
//                 from the low one (Q4_K/Q5_K: elements l and l + 32 of each 64-element chunk);
//                 the fifth bits (Q5_*: qh) stay with their elements.
//   kquant_scale  Q4_K, Q5_K: the 6-bit scale of sub-blocks 4..7 takes its top 2 bits from
//                 byte j of the 12 packed scale bytes (where the min's are) instead of byte
//                 j - 4 (ggml's get_scale_min_k4 reads q[j - 4] for the scale and q[j - 0] for
//                 the min, and the copied line keeps the min's index). Mins and sub-blocks 0..3
//                 are right; a sub-block whose scale and min share their top 2 bits is too.
//   q4_1_min_sign Q4_1, Q5_1: x = d * q - m instead of d * q + m; Q2_K, Q4_K, Q5_K: the min
//                 term added instead of subtracted (x = d * sc * q + dmin * m).
//   last_block    every block type: the last block of each row skipped (a loop to nb - 1):
//                 matmul leaves its products out of every dot product (a row of one block
//                 gives 0); embedding never writes the last block's elements of each output
//                 row.
//   q6_k_high_bits  Q6_K: in each half of 128 elements, elements l + 32 and l + 64 take each
//                 other's top 2 bits (qh shifts 2 and 4 exchanged).
// f16_reader is the same kind of bug for f16 weights (other types, f32 and bf16 included, go to
// the inner backend):
//   f16_reader    matmul (w) and embedding (table): each f16 value widened and then cut to
//                 bf16 by truncation (its mantissa's low 3 bits dropped), as a port that feeds
//                 f16 weights to a bf16 unit might; relative error below 2^-7. One reader that
//                 both ops share, so both break.
// A call on which the bug changes no decoded value (every byte's two nibbles equal, mins of
// zero, a dropped block of zeros; for f16_reader every value's low 3 mantissa bits zero) goes
// to the inner kernel; embedding's unwritten elements under last_block are an effect whatever
// their values.
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
// The block types whose decoding a quantized-weight fault breaks (in matmul's w and
// embedding's table); empty for the other faults. Throws Error for an unknown fault.
std::vector<DType> fault_block_types(const std::string& fault);

// Opens the inner backend through the registry, so the inner scheme must be registered.
std::unique_ptr<Backend> make_faulty_backend(const BackendUri& uri);

}  // namespace tapml

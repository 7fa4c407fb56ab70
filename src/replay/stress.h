// Stress variants of carved tests: the same op, attributes and structure (token ids,
// positions, weights, rope's frequency factors, moe_ffn's route) with the activations pushed
// to where kernels break: large-model outliers, exp past its overflow points in f16
// (ln 65504 ~ 11.09) and f32 (ln FLT_MAX ~ 88.7), rows of near-equal values at a large
// offset, long attention prefixes. A small model's own run never gets there (stories260K's
// attention scores stay within about 22, its gates within about 5), so a kernel that is
// only right in that range passes every carved test; docs/oracle.md ("Stress variants")
// gives the magnitudes chosen and why.
//
// A variant is judged like the test it came from: expected outputs from the source, the
// noise floor from the noise reference, the same oracle. A variant whose source or
// plain-f32 outputs overflow where the carved ones did not is skipped with the reason: no
// f32 kernel can be held to an answer f32 cannot hold.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "carve/test_case.h"

namespace tapml {

struct StressVariant {
  enum class Kind {
    Scaled,     // every activation times `level` (attention: q and k by sqrt(level), so
                // that the scores grow by `level`)
    NearEqual,  // each activation row near-equal values: its largest magnitude plus 1e-3
                // of its deviations (attention: the keys near-equal to one another, their
                // mean plus 1e-3 of each one's deviation, so that each row of scores is);
                // then scaled as Scaled
    LongPrefix  // attention: the carved keys and values repeated to `prefix` rows
  };
  Kind kind = Kind::Scaled;
  double level = 1;    // Scaled, NearEqual: the multiple of the carved test's own range
  int64_t prefix = 0;  // LongPrefix: keys the queries see

  // "x40", "near-equal-x10", "prefix-4096": the form --stress takes and reports print.
  std::string name() const;
  // The inverse of name(); a bare number N means xN. UsageError for anything else.
  static StressVariant parse(const std::string& text);
  bool operator==(const StressVariant&) const = default;
};

// x10, x40, x100, x1000, near-equal-x10, prefix-4096.
std::vector<StressVariant> default_stress_variants();
// A comma-separated list of names; UsageError naming a bad one.
std::vector<StressVariant> parse_stress_variants(const std::string& list);

// Float input `i` of an `op` call whose values the op's meaning constrains: rope's
// freq_factors divide frequencies (one near 0 would make the angles huge), and moe_ffn's
// route says by its zeros which experts run. Stress and synthetic inputs keep them, as they
// keep integer ids and positions.
bool value_constrained(Op op, size_t input);

// What a variant of `op` pushes: "score" (attention: scale * q.k as exp sees it, after any
// soft cap), "gate" (swiglu, sigmoid_gate), else "activation" (every input a variant changes).
const char* stressed_quantity(Op op);

// The smallest and largest values of that quantity.
struct ValueRange {
  double low = 0, high = 0;
  double magnitude() const;  // max(|low|, |high|): what a level multiplies
  // "[-152, 21.9]"
  std::string str() const;
};
ValueRange stressed_range(const TestCase& test);

struct StressCase {
  TestCase test;        // the variant: inputs pushed, outputs from the source, noise floors
  ValueRange range;     // stressed_range(test)
  std::string skipped;  // why the variant cannot be judged, or "" when it can
};

// The variant `v` of `carved`, or nullopt when it does not apply to the call: nothing to
// push (embedding: a weight and ids), a near-equal router (a near-tie decides which experts
// run, so any rounding may legitimately choose others), a prefix on an op other than
// attention or no longer than the carved one. Deterministic.
std::optional<StressCase> make_stress_case(const TestCase& carved, const StressVariant& v,
                                           Backend& source, Backend& plain_f32);

}  // namespace tapml

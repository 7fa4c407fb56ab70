// Where and when in a model run an op call happens, as structured values with one canonical
// string form each. The string forms are what placement rules match, what reports and the
// corpus store, and what backends see in OpCall::site; they are built and parsed only here.
#pragma once
#include <compare>
#include <iosfwd>
#include <string>
#include <string_view>

namespace tapml {

// A layer (-1 outside the blocks) and a role within it, named after the GGUF tensors:
// {3, "attn_q"} is "blk.3.attn_q"; {-1, "token_embd"} is "token_embd".
struct Site {
  int layer = -1;
  std::string role;

  std::string str() const;
  // Appends str() to out (no string of its own: for names built in a kept buffer).
  void append_to(std::string& out) const;
  // The inverse of str(): "blk.N.ROLE" gives {N, ROLE}; any other text is a role outside the
  // blocks. Throws Error for an empty site or an empty role.
  static Site parse(std::string_view text);
  auto operator<=>(const Site&) const = default;
};

// The part of a generation a call belongs to: the prompt's prefill batch, or the K-th
// single-token decode step after it (K >= 1). "prefill", "decode_K".
struct Phase {
  int decode_step = 0;  // 0: prefill

  static Phase prefill() { return {}; }
  static Phase decode(int step);
  bool is_prefill() const { return decode_step == 0; }
  std::string str() const;
  // The inverse of str(); throws Error for anything else.
  static Phase parse(std::string_view text);
  auto operator<=>(const Phase&) const = default;
};

// The string forms, for messages and test output.
std::ostream& operator<<(std::ostream& os, const Site& s);
std::ostream& operator<<(std::ostream& os, const Phase& p);

}  // namespace tapml

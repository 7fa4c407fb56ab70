// The version of this build of tapml, as `tapml --version` and the reports state it.
#pragma once

namespace tapml {

inline constexpr char kTapmlVersion[] = "0.1";

}  // namespace tapml

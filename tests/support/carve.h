// A corpus carved in-process: the model run greedily on ref, every kept test calibrated with
// the noise reference, as `tapml carve` does.
#pragma once
#include <string>
#include <vector>

#include "model/model_file.h"

namespace tapml::testing {

void carve_on_ref(const ModelFile& model, const std::string& path, const std::vector<int>& prompt,
                  int steps, int keep = 3);

}  // namespace tapml::testing

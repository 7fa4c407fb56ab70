// Carving a model: run it on the source backend over every prompt (prefill and each decode
// step) with a Recorder attached, and finish the corpus. The caller supplies the noise
// calibration as `before_store` (replay's calibrate_noise), since carving knows nothing of
// how tests are judged.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "carve/corpus.h"
#include "carve/recorder.h"
#include "model/model_file.h"
#include "runtime/device_pool.h"

namespace tapml {

struct CarveOptions {
  std::string source = "ref";
  int steps = 256;
  int keep = 3;
  std::vector<int> stop_tokens;
  std::function<void(TestCase&)> before_store;
  // Called now and then with (prompt index, prompt count, tokens produced, stats so far).
  std::function<void(size_t, size_t, int, const CarveStats&)> progress;
  // The process's devices; the run opens its own when null.
  DevicePool* pool = nullptr;
};

// `prompts` are token ids, BOS first; `prompt_texts` are recorded in the corpus metadata.
CarveStats carve_model(const ModelFile& model, const std::vector<std::vector<int>>& prompts,
                       const std::vector<std::string>& prompt_texts, const CarveOptions& options,
                       Corpus& corpus);

}  // namespace tapml

// Carving a model: run it on the source backend over every prompt (prefill and each decode
// step) with a Recorder attached, and finish the corpus. The caller supplies the noise
// calibration as `before_store` (replay's calibrate_noise), since carving knows nothing of
// how tests are judged. With `cover`, the carve then fills the shape classes it missed
// (carve/cover.h): a cover run of the model and narrowed twins.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "carve/corpus.h"
#include "carve/cover.h"
#include "carve/recorder.h"
#include "core/dtype.h"
#include "model/model_file.h"
#include "runtime/device_pool.h"

namespace tapml {

struct CarveOptions {
  std::string source = "ref";
  int steps = 256;
  int keep = 3;
  DType kv_cache = DType::F32;  // the source run's KV cache (f16: half precision)
  std::vector<int> stop_tokens;
  // Fill the shape classes the prompts missed (carve/cover.h).
  bool cover = false;
  std::function<void(TestCase&)> before_store;
  // Called now and then with (prompt index, prompt count, tokens produced, stats so far).
  std::function<void(size_t, size_t, int, const CarveStats&)> progress;
  // The process's devices; the run opens its own when null.
  DevicePool* pool = nullptr;
};

// What --cover added: the cover run (plan.prefill 0: none was needed) and its tests, twins.
struct CoverSummary {
  bool asked = false;
  CoverRunPlan plan;
  int from_prompt = 0;    // whose token sequence the run used
  int64_t run_tests = 0;  // tests the cover run added
  int64_t twins = 0;
};
struct CarveResult : CarveStats {
  CoverSummary cover;
};

// `prompts` are token ids, BOS first; `prompt_texts` are recorded in the corpus metadata.
CarveResult carve_model(const ModelFile& model, const std::vector<std::vector<int>>& prompts,
                        const std::vector<std::string>& prompt_texts, const CarveOptions& options,
                        Corpus& corpus);

// The same into the file `path`, which never holds a half-made corpus: the carve writes
// PATH.partial, marked unfinished, and a carve that completes marks it finished and moves it
// onto PATH. A carve that fails or is killed leaves PATH as it was (an existing corpus is
// lost only to a finished replacement) and PATH.partial behind, with every test stored so far
// (`tapml test --allow-partial` replays it). An existing PATH is an Error unless `overwrite`,
// before any work. `prepare` runs on the new corpus before the first test is stored.
CarveResult carve_to_file(const ModelFile& model, const std::vector<std::vector<int>>& prompts,
                          const std::vector<std::string>& prompt_texts, const CarveOptions& options,
                          const std::string& path, bool overwrite,
                          const std::function<void(Corpus&)>& prepare = {});
// Where carve_to_file builds the corpus for `path`.
std::string partial_corpus_path(const std::string& path);

}  // namespace tapml

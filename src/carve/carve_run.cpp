#include "carve/carve_run.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/hash.h"
#include "runtime/generate.h"
#include "runtime/session.h"

namespace tapml {

CarveStats carve_model(const ModelFile& model, const std::vector<std::vector<int>>& prompts,
                       const std::vector<std::string>& prompt_texts, const CarveOptions& o,
                       Corpus& corpus) {
  corpus.set_meta("model", model.path);
  corpus.set_meta("model_hash", file_hash(model.path));
  corpus.set_meta("source", o.source);
  corpus.set_meta("prompts", nlohmann::json(prompt_texts).dump());
  corpus.set_meta("steps", std::to_string(o.steps));
  corpus.set_meta("keep", std::to_string(o.keep));

  Recorder recorder(corpus, o.keep, o.before_store);
  DevicePool own;
  Session session(model, Placement(o.source), o.pool ? *o.pool : own,
                  std::max(model.config.max_seq_len, o.steps));
  session.dispatcher().add_observer(&recorder);
  for (size_t i = 0; i < prompts.size(); ++i) {
    recorder.set_prompt_index(int(i));
    GenerateOptions g;
    g.steps = o.steps;
    g.stop_tokens = o.stop_tokens;
    int produced = 0;
    if (o.progress)
      g.on_token = [&](int) { o.progress(i, prompts.size(), ++produced, recorder.stats()); };
    generate(session, prompts[i], g);
  }
  recorder.finish();
  session.dispatcher().remove_observer(&recorder);
  corpus.set_meta("calls_seen", std::to_string(recorder.stats().calls_seen));
  corpus.set_meta("signatures", std::to_string(recorder.stats().signatures));
  return recorder.stats();
}

}  // namespace tapml

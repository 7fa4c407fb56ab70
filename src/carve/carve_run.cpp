#include "carve/carve_run.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/hash.h"
#include "core/json_text.h"
#include "runtime/generate.h"
#include "runtime/session.h"

namespace tapml {

namespace fs = std::filesystem;

CarveStats carve_model(const ModelFile& model, const std::vector<std::vector<int>>& prompts,
                       const std::vector<std::string>& prompt_texts, const CarveOptions& o,
                       Corpus& corpus) {
  corpus.set_meta("model", model.path);
  corpus.set_meta("model_hash", file_hash(model.path));
  corpus.set_meta("source", o.source);
  corpus.set_meta("prompts", json_text(nlohmann::json(prompt_texts)));
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

std::string partial_corpus_path(const std::string& path) { return path + ".partial"; }

CarveStats carve_to_file(const ModelFile& model, const std::vector<std::vector<int>>& prompts,
                         const std::vector<std::string>& prompt_texts, const CarveOptions& options,
                         const std::string& path, bool overwrite,
                         const std::function<void(Corpus&)>& prepare) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (fs::exists(st)) {
    TAPML_REQUIRE_USAGE(overwrite, path +
                                       ": already exists (choose another path, or "
                                       "--overwrite to replace it once the new carve is done)");
    TAPML_REQUIRE_USAGE(fs::is_regular_file(st), path + ": is not a file a corpus can replace");
    Corpus::open(path);  // what --overwrite replaces must be a corpus, not a model or a report
  }
  const std::string partial = partial_corpus_path(path);
  CarveStats stats;
  {
    Corpus corpus = Corpus::create(partial, true);
    corpus.set_finished(false);
    if (prepare) prepare(corpus);
    stats = carve_model(model, prompts, prompt_texts, options, corpus);
    corpus.set_finished(true);
  }  // closed: the log is folded into the file, which can now move
  Corpus::publish(partial, path);
  return stats;
}

}  // namespace tapml

#include "carve/carve_run.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "carve/coverage.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/json_text.h"
#include "runtime/generate.h"
#include "runtime/session.h"

namespace tapml {

namespace fs = std::filesystem;

namespace {

// The cover run: the model once more over `ids` (a sequence the carve produced), as a
// prefill, a second prefill chunk and decode steps, every call recorded.
void run_cover(Session& session, const std::vector<int>& ids, const CoverRunPlan& plan) {
  std::vector<int32_t> tokens(ids.begin(), ids.begin() + plan.positions());
  std::span<const int32_t> all(tokens);
  session.reset();
  session.forward(all.first(size_t(plan.prefill)), false);
  session.forward(all.subspan(size_t(plan.prefill), size_t(plan.chunk)), false);
  for (int i = 0; i < plan.decode; ++i)
    session.forward(all.subspan(size_t(plan.prefill + plan.chunk + i), 1), false);
}

}  // namespace

CarveResult carve_model(const ModelFile& model, const std::vector<std::vector<int>>& prompts,
                        const std::vector<std::string>& prompt_texts, const CarveOptions& o,
                        Corpus& corpus) {
  corpus.set_meta("model", model.path);
  corpus.set_meta("model_hash", file_hash(model.path));
  corpus.set_meta("source", o.source);
  corpus.set_meta("prompts", json_text(nlohmann::json(prompt_texts)));
  corpus.set_meta("steps", std::to_string(o.steps));
  corpus.set_meta("keep", std::to_string(o.keep));
  corpus.set_meta("kv_cache", std::string(dtype_name(o.kv_cache)));
  // What a deployment of the model reaches: coverage tells classes past it apart.
  const int context = model.config.max_seq_len > 0 ? model.config.max_seq_len : o.steps;
  corpus.set_meta("context", std::to_string(context));

  Recorder recorder(corpus, o.keep, o.before_store);
  DevicePool own;
  DevicePool& pool = o.pool ? *o.pool : own;
  Session session(model, Placement(o.source), pool, std::max(model.config.max_seq_len, o.steps),
                  o.kv_cache);
  session.dispatcher().add_observer(&recorder);
  CarveResult result;
  std::vector<int> longest;  // the longest token sequence of the runs: where a cover run reads
  for (size_t i = 0; i < prompts.size(); ++i) {
    recorder.set_prompt_index(int(i));
    GenerateOptions g;
    g.steps = o.steps;
    g.stop_tokens = o.stop_tokens;
    int produced = 0;
    if (o.progress)
      g.on_token = [&](int) { o.progress(i, prompts.size(), ++produced, recorder.stats()); };
    std::vector<int> ids = generate(session, prompts[i], g).token_ids;
    if (ids.size() > longest.size()) {
      longest = std::move(ids);
      result.cover.from_prompt = int(i);
    }
  }
  CoverSummary& cover = result.cover;
  cover.asked = o.cover;
  if (o.cover && !prompts.empty()) {
    std::vector<TestOutline> carved = corpus.outlines(), held = recorder.held();
    carved.insert(carved.end(), held.begin(), held.end());
    cover.plan = plan_cover_run(measure_coverage(carved), context);
    if (cover.plan.prefill > 0) {
      if (longest.size() < size_t(cover.plan.positions())) {
        // The carve stopped short of the run's length: its greedy continuation, unrecorded
        // and past any stop token, supplies the rest.
        session.dispatcher().remove_observer(&recorder);
        GenerateOptions g;
        g.steps = cover.plan.positions() - 1;
        longest = generate(session, prompts[size_t(cover.from_prompt)], g).token_ids;
        session.dispatcher().add_observer(&recorder);
      }
      recorder.set_prompt_index(int(prompts.size()));
      run_cover(session, longest, cover.plan);
    }
  }
  recorder.finish();
  session.dispatcher().remove_observer(&recorder);
  static_cast<CarveStats&>(result) = recorder.stats();
  if (o.cover) {
    for (const TestOutline& t : corpus.outlines())
      cover.run_tests += t.prompt_index == int(prompts.size());
    for (TestCase& t :
         cover_twins(corpus, measure_coverage(corpus.outlines()), pool.open(o.source))) {
      if (o.before_store) o.before_store(t);
      corpus.add(t);
      cover.twins++;
    }
    nlohmann::json j = {{"prefill", cover.plan.prefill},
                        {"chunk", cover.plan.prefill ? cover.plan.chunk : 0},
                        {"decode", cover.plan.prefill ? cover.plan.decode : 0},
                        {"from_prompt", cover.from_prompt},
                        {"prompt_index", prompts.size()},
                        {"run_tests", cover.run_tests},
                        {"twins", cover.twins},
                        {"unreachable", cover.plan.unreachable}};
    corpus.set_meta("cover", json_text(j));
  }
  corpus.set_meta("calls_seen", std::to_string(recorder.stats().calls_seen));
  corpus.set_meta("signatures", std::to_string(recorder.stats().signatures));
  return result;
}

std::string partial_corpus_path(const std::string& path) { return path + ".partial"; }

CarveResult carve_to_file(const ModelFile& model, const std::vector<std::vector<int>>& prompts,
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
  CarveResult stats;
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

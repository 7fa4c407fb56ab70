#include "support/carve.h"

#include "backends/builtin.h"
#include "carve/corpus.h"
#include "carve/recorder.h"
#include "check/oracle.h"
#include "replay/replay.h"
#include "runtime/generate.h"
#include "runtime/session.h"

namespace tapml::testing {

void carve_on_ref(const ModelFile& model, const std::string& path, const std::vector<int>& prompt,
                  int steps, int keep) {
  Corpus corpus = Corpus::create(path);
  auto plain = open_backend(kNoiseReference);
  Recorder rec(corpus, keep, [&](TestCase& t) { calibrate_noise(t, *plain); });
  Session s(model, Placement("ref"));
  s.dispatcher().add_observer(&rec);
  GenerateOptions o;
  o.steps = steps;
  generate(s, prompt, o);
  rec.finish();
}

}  // namespace tapml::testing

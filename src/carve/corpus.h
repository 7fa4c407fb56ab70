// The corpus: carved tests in one SQLite file. Tensor bytes are content-addressed (hash ->
// bytes), so a value shared by many tests (a weight, a cache prefix) is stored once; a
// model weight may instead be stored by reference (model file + tensor name + hash),
// verified when loaded. Each test is written in one transaction, so a process killed at
// any moment leaves a file that opens and holds only complete tests. The file carries a
// schema version; opening a foreign, truncated or newer file is a clear Error.
// A Corpus is one SQLite connection: use it from one thread at a time (one per process or
// thread is fine; writers wait for each other).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "carve/test_case.h"

namespace tapml {

struct CorpusSummary {
  int64_t tests = 0;
  int64_t blobs = 0;             // distinct tensor contents stored
  int64_t blob_bytes = 0;        // bytes of tensor data stored in the file
  int64_t referenced_bytes = 0;  // bytes of weights stored by reference only
  int64_t file_bytes = 0;
  std::map<std::string, int64_t> tests_per_op;
  std::map<std::string, std::string> meta;  // model, model_hash, prompts, calls_seen, ...
};

// A listing row: what a test is without its tensors.
struct TestInfo {
  int64_t id = 0;
  std::string op, site, phase, signature, kept_because;
  int layer = -1;
  int64_t call_index = 0;
  int prompt_index = 0;
};

class Corpus {
 public:
  static constexpr int kSchemaVersion = 1;

  // Creates a new corpus file; an existing file at `path` is an Error unless `overwrite`.
  static Corpus create(const std::string& path, bool overwrite = false);
  // Opens an existing corpus for reading and appending. Error for a missing, foreign,
  // truncated or unsupported-version file ("x.db: schema version 3, this build reads 1").
  static Corpus open(const std::string& path);

  Corpus(Corpus&&) noexcept;
  Corpus& operator=(Corpus&&) noexcept;
  ~Corpus();

  const std::string& path() const { return path_; }

  // Whether the carve that made this corpus finished. A carve writes beside its target and
  // marks the file unfinished until it is done (carve_to_file); corpora made otherwise (an
  // import, a program) count as finished.
  bool finished() const;
  void set_finished(bool done);
  // Moves a closed corpus file onto `target`, replacing what is there in one step (the
  // target's stale log files first). Error naming both paths when it cannot.
  static void publish(const std::string& built, const std::string& target);
  void set_meta(const std::string& key, const std::string& value);
  std::optional<std::string> meta(const std::string& key) const;

  // When set, inputs whose TestCase::input_weights entry names a weight are stored as a
  // reference to that tensor of this model file instead of as bytes.
  void store_weights_by_reference(const std::string& model_path);

  // Stores one test (one transaction); returns its id.
  int64_t add(const TestCase& test);
  // Every test, filtered by regular expressions over op and site (empty = all), by id.
  std::vector<TestInfo> list(const std::string& op_regex = "",
                             const std::string& site_regex = "") const;
  // The whole test with its tensors. Error for an unknown id or a referenced weight whose
  // file is gone or whose bytes no longer hash the same. Tensors stored by value own their
  // bytes; a weight stored by reference borrows the mapped model file (read-only).
  TestCase load(int64_t id) const;
  // Every test without its tensor values (op, attributes, site, phase, dtypes, shapes), by
  // id: what coverage is computed from, without reading tensor bytes.
  std::vector<TestOutline> outlines() const;
  CorpusSummary summary() const;

  // Writes one test as a folder: tensors.safetensors (inputs "in.N.NAME", outputs
  // "out.N.NAME") and manifest.json (format version, op, attrs, site, phase, noise, ...).
  void export_test(int64_t id, const std::string& folder) const;
  // Reads such a folder back into a TestCase (not stored; call add()).
  static TestCase import_test(const std::string& folder);

 private:
  Corpus() = default;
  struct Db;
  std::unique_ptr<Db> db_;
  std::string path_;
};

}  // namespace tapml

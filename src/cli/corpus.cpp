// tapml corpus info|ls|export|import: look into a corpus of carved tests (info adds its
// coverage: the shape classes each op's tests exercise, and warnings about those missing) and
// move single tests in and out of it as folders (safetensors + manifest.json) that numpy can
// read.
#include "carve/corpus.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "carve/coverage.h"
#include "cli/commands.h"
#include "cli/json_output.h"
#include "core/error.h"

namespace tapml::cli {

namespace {

struct CorpusArgs {
  std::string corpus, op, site, out, from;
  int64_t test = 0;
  bool json = false, create = false;
};

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f MiB", double(bytes) / 1048576.0);
  return buf;
}

void info(const CorpusArgs& a) {
  Corpus c = Corpus::open(a.corpus);
  CorpusSummary s = c.summary();
  Coverage coverage = measure_coverage(c.outlines());
  if (a.json) {
    nlohmann::json j;
    j["path"] = c.path();
    j["tests"] = s.tests;
    j["tests_per_op"] = s.tests_per_op;
    j["blobs"] = s.blobs;
    j["blob_bytes"] = s.blob_bytes;
    j["referenced_bytes"] = s.referenced_bytes;
    j["file_bytes"] = s.file_bytes;
    j["meta"] = s.meta;
    j["coverage"] = coverage_json(coverage, corpus_context(s.meta));
    print_json(j);
    return;
  }
  std::printf("%s\n", c.path().c_str());
  std::printf("  %lld tests, %lld distinct tensors (%s stored", (long long)s.tests,
              (long long)s.blobs, mib(s.blob_bytes).c_str());
  if (s.referenced_bytes > 0)
    std::printf(", %s of model weights by reference", mib(s.referenced_bytes).c_str());
  std::printf("), file %s\n", mib(s.file_bytes).c_str());
  for (auto& [op, n] : s.tests_per_op) std::printf("    %-12s %lld\n", op.c_str(), (long long)n);
  for (auto& [k, v] : s.meta) std::printf("  %s: %s\n", k.c_str(), v.c_str());
  std::printf("%s%s", coverage_table(coverage).c_str(),
              gaps_text(coverage_gaps(coverage, corpus_context(s.meta))).c_str());
}

void ls(const CorpusArgs& a) {
  Corpus c = Corpus::open(a.corpus);
  std::vector<TestInfo> tests = c.list(a.op, a.site);
  if (a.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const TestInfo& t : tests)
      j.push_back({{"id", t.id},
                   {"op", t.op},
                   {"site", t.site},
                   {"layer", t.layer},
                   {"phase", t.phase},
                   {"call_index", t.call_index},
                   {"prompt_index", t.prompt_index},
                   {"signature", t.signature},
                   {"kept_because", t.kept_because}});
    print_json(j);
    return;
  }
  for (const TestInfo& t : tests)
    std::printf("%6lld  %-10s %-20s %-10s %s\n", (long long)t.id, t.op.c_str(), t.site.c_str(),
                t.phase.c_str(), t.signature.c_str());
}

void export_test(const CorpusArgs& a) {
  Corpus c = Corpus::open(a.corpus);
  c.export_test(a.test, a.out);
  std::printf("test %lld written to %s\n", (long long)a.test, a.out.c_str());
}

void import_test(const CorpusArgs& a) {
  TestCase t = Corpus::import_test(a.from);
  std::error_code ec;
  bool fresh = !std::filesystem::exists(a.corpus, ec);
  TAPML_REQUIRE(!fresh || a.create, a.corpus + ": no such corpus file (--create makes a new one)");
  Corpus c = fresh ? Corpus::create(a.corpus) : Corpus::open(a.corpus);
  std::printf("%lld\n", (long long)c.add(t));
}

}  // namespace

void add_corpus(CLI::App& app) {
  auto a = std::make_shared<CorpusArgs>();
  CLI::App* c =
      app.add_subcommand("corpus", "Inspect a corpus of carved tests; export or import one");
  c->require_subcommand(1);
  auto corpus_option = [&](CLI::App* sub) {
    sub->add_option("--corpus", a->corpus, "corpus file")->required();
  };

  CLI::App* i = c->add_subcommand(
      "info", "Counts, sizes, metadata, and the shape classes each op's tests exercise");
  corpus_option(i);
  i->add_flag("--json", a->json, "print JSON");
  i->callback([a] { info(*a); });

  CLI::App* l = c->add_subcommand("ls", "One line per test: id, op, site, phase, signature");
  corpus_option(l);
  l->add_option("--op", a->op, "only ops matching this regular expression");
  l->add_option("--site", a->site, "only sites matching this regular expression");
  l->add_flag("--json", a->json, "print JSON");
  l->callback([a] { ls(*a); });

  CLI::App* e = c->add_subcommand(
      "export", "Write one test as a folder: tensors.safetensors + manifest.json");
  corpus_option(e);
  e->add_option("--id,--test", a->test, "test id (see ls; --test is the old name)")->required();
  e->add_option("--out", a->out, "folder to write (new, empty, or an earlier export)")->required();
  e->callback([a] { export_test(*a); });

  CLI::App* m = c->add_subcommand("import", "Add an exported test folder; prints its new id");
  corpus_option(m);
  m->add_option("--from", a->from, "folder written by export")->required();
  m->add_flag("--create", a->create, "create the corpus if it does not exist");
  m->callback([a] { import_test(*a); });
}

}  // namespace tapml::cli

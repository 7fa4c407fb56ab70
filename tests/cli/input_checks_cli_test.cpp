// What the command line does with mistakes: the exit status says what kind, patterns never
// hang, filters and rules that match nothing are refused naming the candidates, and values are
// checked against the model before any work is done.
#include <gtest/gtest.h>

#include <filesystem>

#include "support/shared.h"

namespace tapml {
namespace {

using testing::run_command;
using testing::shell_quote;

std::string tapml(const std::string& args) { return testing::tapml_command(args); }
std::string stories() {
  return shell_quote(testing::shared_path("models/stories260K/stories260K.gguf"));
}

// One line on stderr, naming `needle`, and exit status `status`.
void expect_error(const testing::CommandResult& r, int status, const std::string& needle) {
  EXPECT_EQ(r.exit_code, status) << r.err;
  EXPECT_EQ(r.err.rfind("tapml: ", 0), 0u) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "stderr is not one line: " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

TEST(InputChecks, ExitStatusSaysWhatKindOfError) {
  expect_error(run_command(tapml("run --model " + stories() + " --no-such-flag")), 2,
               "--no-such-flag");
  expect_error(run_command(tapml("frobnicate")), 2, "unknown command 'frobnicate'");
  expect_error(run_command(tapml("run")), 2, "--model is required");
  expect_error(run_command(tapml("run --model /nonexistent/m.gguf")), 3, "/nonexistent/m.gguf");
  expect_error(run_command(tapml("run --model " + stories() + " --backend bogus")), 2,
               "unknown backend 'bogus'");
  expect_error(run_command(tapml("run --model " + stories() + " --backend 'cpu?threads=0'")), 2,
               "threads=0");
  expect_error(
      run_command(tapml("run --model " + stories() + " --backend 'faulty:cpu?fault=nope'")), 2,
      "unknown fault 'nope'");
  auto help = run_command(tapml("migrate --help"));
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("2 usage error"), std::string::npos) << help.out;
}

TEST(InputChecks, PatternsRunInLinearTime) {
  // (a*)*(a*)*...b backtracks exponentially in an ECMAScript engine; the outer timeout turns a
  // hang into a failure (status 124).
  std::string nested;
  for (int i = 0; i < 50; ++i) nested += "(a*)*";
  auto r = run_command("timeout 60 " + tapml("run --model " + stories() + " --steps 4 --place " +
                                             shell_quote(nested + "b=cpu")));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = run_command("timeout 60 " +
                  tapml("compare --model " + stories() + " --backend cpu --steps 3 --site " +
                        shell_quote(nested + "X")));
  EXPECT_EQ(r.exit_code, 2) << r.err;  // matches no site, and says so quickly
}

TEST(InputChecks, ABadPatternIsNamed) {
  expect_error(run_command(tapml("run --model " + stories() + " --place '(=cpu'")), 2,
               "the pattern '(' is not a valid regular expression");
  expect_error(run_command(tapml("run --model " + stories() + " --place 'x(=cpu'")), 2,
               "'x(' is not a valid regular expression");
}

TEST(InputChecks, RulesAndFiltersThatMatchNothingAreRefused) {
  expect_error(run_command(tapml("run --model " + stories() + " --place 'matmull=ref'")), 2,
               "placement rule 'matmull=ref' matches no site and no op of this model (ops: "
               "embedding, rmsnorm, matmul");
  expect_error(
      run_command(tapml("compare --model " + stories() + " --backend cpu --site nothing")), 2,
      "--site 'nothing' matches no site of this model (sites: token_embd; blk.0 to blk.4 each "
      "with attn_norm");
  // A corpus filter that selects no test must not "pass" the corpus.
  std::string dir = testing::temp_dir();
  std::string corpus = shell_quote(dir + "/c.corpus");
  auto carve =
      run_command(tapml("carve --model " + stories() + " --prompt '' --steps 4 --out " + corpus));
  ASSERT_EQ(carve.exit_code, 0) << carve.err;
  expect_error(run_command(tapml("test --corpus " + corpus + " --backend cpu --op matmull")), 2,
               "no test matches --op 'matmull' (the ");
  expect_error(run_command(tapml("test --corpus " + corpus + " --backend cpu --site blk.9")), 2,
               "are of ops add, attention, embedding");
}

TEST(InputChecks, TestPrintsTheSummaryFirstAndCapsFailureLines) {
  std::string dir = testing::temp_dir();
  std::string corpus = shell_quote(dir + "/c.corpus");
  ASSERT_EQ(
      run_command(tapml("carve --model " + stories() + " --prompt '' --steps 12 --out " + corpus))
          .exit_code,
      0);
  std::string bad = shell_quote("faulty:cpu?fault=gqa_map");
  auto r = run_command(tapml("test --corpus " + corpus + " --backend " + bad +
                             " --max-failures 2 --json " + shell_quote(dir + "/r.json")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out.rfind("op ", 0), 0u) << r.out;  // the table comes first
  size_t fails = 0;
  for (size_t at = r.out.find("\nFAIL #"); at != std::string::npos;
       at = r.out.find("\nFAIL #", at + 1))
    ++fails;
  EXPECT_EQ(fails, 2u) << r.out;
  EXPECT_NE(r.out.find("more failures (--max-failures 0 lists all; all are in "), std::string::npos)
      << r.out;
  auto all =
      run_command(tapml("test --corpus " + corpus + " --backend " + bad + " --max-failures 0"));
  size_t every = 0;
  for (size_t at = all.out.find("\nFAIL #"); at != std::string::npos;
       at = all.out.find("\nFAIL #", at + 1))
    ++every;
  EXPECT_GT(every, 2u);
}

TEST(InputChecks, OutputPathsAreWrittenAsTheyAre) {
  std::string dir = testing::temp_dir();
  std::string corpus = dir + "/c.corpus";
  ASSERT_EQ(run_command(tapml("carve --model " + stories() + " --prompt '' --steps 4 --out " +
                              shell_quote(corpus)))
                .exit_code,
            0);
  auto test_to = [&](const std::string& out) {
    return run_command(tapml("test --corpus " + shell_quote(corpus) + " --backend cpu --json " +
                             shell_quote(out)));
  };
  // A corpus or a model named by mistake is refused before anything runs, and survives.
  auto r = test_to(corpus);
  expect_error(r, 2, "is an SQLite file (a corpus?); refusing to replace it");
  EXPECT_EQ(run_command(tapml("corpus info --corpus " + shell_quote(corpus))).exit_code, 0);
  expect_error(test_to(testing::shared_path("models/stories260K/stories260K.gguf")), 2,
               "is a GGUF model; refusing to replace it");
  expect_error(test_to(dir + "/no/such/folder/r.json"), 2, "does not exist");
  expect_error(test_to(dir), 2, "is a folder");
  // /dev/stdout is written through, not replaced by a regular file.
  r = test_to("/dev/stdout");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"format\": \"tapml-test-report\""), std::string::npos) << r.out;
  // A symbolic link keeps pointing at its target, which gets the report.
  std::filesystem::create_symlink(dir + "/target.json", dir + "/link.json");
  ASSERT_EQ(test_to(dir + "/link.json").exit_code, 0);
  EXPECT_TRUE(std::filesystem::is_symlink(dir + "/link.json"));
  EXPECT_GT(std::filesystem::file_size(dir + "/target.json"), 100u);
  // A FIFO is written through (a reader gets the report), not replaced.
  std::string fifo = dir + "/f.fifo";
  ASSERT_EQ(run_command("mkfifo " + shell_quote(fifo)).exit_code, 0);
  r = run_command(
      "(cat " + shell_quote(fifo) + " > " + shell_quote(dir + "/from_fifo") + " &); " +
      tapml("test --corpus " + shell_quote(corpus) + " --backend cpu --json " + shell_quote(fifo)) +
      "; sleep 0.2");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::is_fifo(fifo));
  EXPECT_GT(std::filesystem::file_size(dir + "/from_fifo"), 100u);
  // A device that cannot take the bytes is an error after the run, and stays a device.
  r = test_to("/dev/full");
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("/dev/full: write failed"), std::string::npos) << r.err;
  EXPECT_TRUE(std::filesystem::is_character_file("/dev/full"));
  // A migration's output paths are checked before the migration runs.
  r = run_command(tapml("migrate --model " + stories() + " --backend cpu --html " +
                        shell_quote(dir + "/missing/r.html")));
  expect_error(r, 2, "--html " + dir + "/missing/r.html: the folder");
}

TEST(InputChecks, ValuesAreCheckedBeforeAnyWork) {
  for (const char* bad : {"0", "-1", "nan", "inf"})
    expect_error(run_command(tapml("migrate --model " + stories() +
                                   " --backend cpu --nmse-threshold " + bad)),
                 2, "--nmse-threshold");
  for (const char* bad : {"-1", "18446744073709551616", "1e3", "x"})
    expect_error(run_command(tapml("run --model " + stories() + " --seed " + bad)), 2, "--seed");
  // demo's fault and site are checked before it carves anything (no output folder appears).
  std::string out = testing::temp_dir() + "/demo";
  expect_error(run_command(tapml("demo --out " + shell_quote(out) + " --fault nope")), 2,
               "unknown fault 'nope' (known faults: softmax_f16");
  expect_error(run_command(tapml("demo --model " + stories() + " --out " + shell_quote(out) +
                                 " --site blk.9.rope_q")),
               2, "--site blk.9.rope_q is not a site of this model");
  expect_error(run_command(tapml("demo --model " + stories() + " --out " + shell_quote(out) +
                                 " --site blk.2.attn_q")),
               2, "runs matmul, which fault rope_pairing does not change");
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST(InputChecks, AContextBeyondTheMemoryBudgetIsRefused) {
  auto r = run_command("TAPML_MEMORY_BUDGET=1000000 " +
                       tapml("run --model " + stories() + " --steps 1048576"));
  expect_error(r, 2,
               "a context of 1048576 positions needs 1.25 GiB of cache for this model, "
               "over the memory budget of 976.56 KiB (TAPML_MEMORY_BUDGET)");
}

TEST(InputChecks, CarveAndCorpusInfoAgreeOnTheFileSize) {
  std::string corpus = shell_quote(testing::temp_dir() + "/c.corpus");
  auto carve = run_command(tapml("carve --model " + stories() +
                                 " --prompt 'Once upon a time' --steps 24 --json --out " + corpus));
  ASSERT_EQ(carve.exit_code, 0) << carve.err;
  auto info = run_command(tapml("corpus info --json --corpus " + corpus));
  ASSERT_EQ(info.exit_code, 0) << info.err;
  auto size = [](const std::string& json) {
    size_t at = json.find("\"file_bytes\": ");
    return at == std::string::npos ? std::string("?") : json.substr(at, json.find(',', at) - at);
  };
  EXPECT_EQ(size(carve.out), size(info.out));
}

TEST(InputChecks, MessagesCountAndNameThings) {
  auto r = run_command(tapml("run --model " + stories() + " --steps 3 --prompt ''"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("prefill 1 token at"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("decode 2 tokens at"), std::string::npos) << r.err;
  auto help = run_command(tapml("run --help"));
  for (const char* kind : {"ref", "cpu", "tcp", "faulty"})
    EXPECT_NE(help.out.find(kind), std::string::npos) << kind;
  EXPECT_NE(help.out.find("tapml info --backends describes each"), std::string::npos);
}

}  // namespace
}  // namespace tapml

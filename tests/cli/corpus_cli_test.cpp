// tapml corpus info|ls|export|import as a user meets them, and one-line errors for corpora
// that are missing, foreign or asked for a test they lack.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "carve/corpus.h"
#include "support/shared.h"
#include "support/stories.h"

namespace tapml {
namespace {

using testing::run_command;
using testing::shell_quote;

std::string tapml(const std::string& args) { return testing::tapml_command(args); }
std::string q(const std::string& s) { return shell_quote(s); }

void expect_one_line_error(const testing::CommandResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "stderr is not one line: " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
}

TestCase small_matmul(float scale) {
  TestCase t;
  t.op = Op::Matmul;
  t.site = Site::parse("blk.0.attn_q");
  t.phase = Phase::parse("prefill");
  std::vector<float> x(16), w(32), out(8);
  for (size_t i = 0; i < x.size(); ++i) x[i] = scale * float(i);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5f * float(i % 5);
  t.inputs = {Tensor::from_f32({2, 8}, x), Tensor::from_f32({4, 8}, w)};
  t.outputs = {Tensor::from_f32({2, 4}, out)};
  t.input_weights = {"", "blk.0.attn_q.weight"};
  return t;
}

std::string make_corpus() {
  std::string path = testing::temp_dir() + "/cli.db";
  Corpus c = Corpus::create(path);
  c.add(small_matmul(1));
  c.add(small_matmul(2));
  TestCase add;
  add.op = Op::Add;
  add.site = Site::parse("blk.0.attn_residual");
  add.phase = Phase::parse("decode_1");
  add.inputs = {Tensor::from_f32({1, 2}, {{1, 2}}), Tensor::from_f32({1, 2}, {{3, 4}})};
  add.outputs = {Tensor::from_f32({1, 2}, {{4, 6}})};
  c.add(add);
  c.set_meta("model", "stories.gguf");
  return path;
}

TEST(CorpusCli, InfoAndLs) {
  std::string path = make_corpus();
  auto r = run_command(tapml("corpus info --corpus " + q(path) + " --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tests"], 3);
  EXPECT_EQ(j["tests_per_op"]["matmul"], 2);
  EXPECT_EQ(j["tests_per_op"]["add"], 1);
  EXPECT_EQ(j["blobs"], 7);  // x1, x2, w, zero out (shared), a, b, a+b
  EXPECT_EQ(j["meta"]["model"], "stories.gguf");
  EXPECT_GT(j["file_bytes"].get<int64_t>(), 0);

  r = run_command(tapml("corpus info --corpus " + q(path)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("3 tests"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("matmul"), std::string::npos) << r.out;

  r = run_command(tapml("corpus ls --corpus " + q(path)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
  EXPECT_NE(r.out.find("blk.0.attn_residual"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("matmul() f32[2, 8] f32[4, 8] -> f32[2, 4]"), std::string::npos) << r.out;

  r = run_command(tapml("corpus ls --corpus " + q(path) + " --op '^add$' --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["id"], 3);
  EXPECT_EQ(j[0]["phase"], "decode_1");
  r = run_command(tapml("corpus ls --corpus " + q(path) + " --site 'attn_q' --json"));
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 2u);
}

TEST(CorpusCli, ExportThenImport) {
  std::string path = make_corpus();
  std::string folder = testing::temp_dir() + "/t2";
  auto r = run_command(tapml("corpus export --corpus " + q(path) + " --test 2 --out " + q(folder)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(folder + "/tensors.safetensors"));
  EXPECT_TRUE(std::filesystem::exists(folder + "/manifest.json"));

  r = run_command(tapml("corpus import --corpus " + q(path) + " --from " + q(folder)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "4\n");
  Corpus c = Corpus::open(path);
  TestCase a = c.load(2), b = c.load(4);
  EXPECT_EQ(a.signature(), b.signature());
  for (size_t i = 0; i < a.inputs.size(); ++i)
    EXPECT_EQ(0, std::memcmp(a.inputs[i].bytes(), b.inputs[i].bytes(), a.inputs[i].nbytes()));
  EXPECT_EQ(c.summary().blobs, 7) << "the import stores no new bytes";

  // Into a new corpus only when asked to create it.
  std::string fresh = testing::temp_dir() + "/fresh.db";
  expect_one_line_error(
      run_command(tapml("corpus import --corpus " + q(fresh) + " --from " + q(folder))),
      "no such corpus file");
  r = run_command(tapml("corpus import --create --corpus " + q(fresh) + " --from " + q(folder)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "1\n");
}

// The first `n` ids of a real prompt, BOS first, as --prompt-ids takes them.
std::string stories_prompt_ids(size_t n) {
  std::vector<int> ids = testing::stories_tokenizer().encode("Once upon a time, there was", true);
  std::string s;
  for (size_t i = 0; i < n && i < ids.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(ids[i]);
  }
  return s;
}

struct Carved {
  std::string path, out;
};
// stories260K as llama2.c wrote it (its context, 512, reaches every class of attention).
Carved carve_stories(const std::string& name, size_t tokens, const std::string& extra) {
  std::string path = testing::temp_dir() + "/" + name;
  auto r = run_command(tapml("carve --model " +
                             q(testing::shared_path("models/stories260K/stories260K.bin")) +
                             " --prompt-ids " + stories_prompt_ids(tokens) + " --steps 12 --out " +
                             q(path) + " " + extra));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return {path, r.out};
}

TEST(CorpusCli, CarveWarnsAndInfoPrintsTheCoverageTable) {
  auto [path, out] = carve_stories("three.corpus", 3, "");
  EXPECT_NE(out.find("warning: matmul: no test with T>=4 (a full 4-row block"), std::string::npos)
      << out;
  EXPECT_NE(out.find("note: matmul: no test with K%4!=0"), std::string::npos) << out;

  auto r = run_command(tapml("corpus info --corpus " + q(path)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("coverage: tests per shape class"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  matmul: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("T>=4 -"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(T: 1, 3)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("warning: matmul: no test with T>=4"), std::string::npos) << r.out;

  r = run_command(tapml("corpus info --json --corpus " + q(path)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  bool found = false;
  for (const auto& op : j["coverage"]["ops"])
    if (op["op"] == "matmul")
      for (const auto& g : op["groups"])
        for (const auto& c : g["classes"])
          if (c["class"] == "T>=4") {
            found = true;
            EXPECT_EQ(c["tests"], 0);
            EXPECT_EQ(c["fill"], "run");
          }
  EXPECT_TRUE(found) << r.out;
  bool warned = false;
  for (const auto& g : j["coverage"]["gaps"])
    warned = warned || (g["severity"] == "warning" && g["classes"][0] == "T>=4");
  EXPECT_TRUE(warned) << j["coverage"]["gaps"].dump();

  // A prompt of 6 tokens fills the 4-row block and its tail.
  out = carve_stories("six.corpus", 6, "").out;
  EXPECT_EQ(out.find("4-row block"), std::string::npos) << out;
  // --cover fills every class this model can reach: no warning, no note.
  out = carve_stories("cover.corpus", 3, "--cover").out;
  EXPECT_EQ(out.find("warning:"), std::string::npos) << out;
  EXPECT_EQ(out.find("note:"), std::string::npos) << out;
  EXPECT_NE(out.find("cover run: prefill"), std::string::npos) << out;
  EXPECT_NE(out.find("cover twins"), std::string::npos) << out;
  EXPECT_NE(out.find("coverage: every shape class it warns about is exercised"), std::string::npos)
      << out;
}

TEST(CorpusCli, InfoShowsTheCoverageOfACorpusMadeByHand) {
  std::string path = make_corpus();
  auto r = run_command(tapml("corpus info --corpus " + q(path)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Two prefill matmuls of 2 rows and an add in decode; nothing else is claimed.
  EXPECT_NE(r.out.find("prefill 2  decode -"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("T=1 -  T>=2 2  T>=4 -"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("prefill -  decode 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("warning: matmul: no test with decode"), std::string::npos) << r.out;
}

TEST(CorpusCli, OneLineErrors) {
  std::string dir = testing::temp_dir();
  std::string missing = dir + "/missing.db";
  expect_one_line_error(run_command(tapml("corpus info --corpus " + q(missing))),
                        missing + ": no such corpus file");
  EXPECT_FALSE(std::filesystem::exists(missing));
  std::string foreign = dir + "/foreign.db";
  std::ofstream(foreign) << "hello, I am a text file\n";
  expect_one_line_error(run_command(tapml("corpus ls --corpus " + q(foreign))),
                        "not a TapML corpus (not an SQLite file)");
  std::string path = make_corpus();
  expect_one_line_error(
      run_command(tapml("corpus export --corpus " + q(path) + " --test 99 --out " + q(dir + "/x"))),
      "no test with id 99");
  expect_one_line_error(
      run_command(tapml("corpus import --corpus " + q(path) + " --from " + q(dir))),
      "not a TapML test export");
  expect_one_line_error(run_command(tapml("corpus ls --corpus " + q(path) + " --op '(('")),
                        "regular expression");
  expect_one_line_error(run_command(tapml("corpus info")), "--corpus");
  expect_one_line_error(run_command(tapml("corpus")), "subcommand");
}

}  // namespace
}  // namespace tapml

// The tapml command as a user meets it: outputs, and one clear line for every bad input.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "format/gguf.h"
#include "support/golden.h"
#include "support/shared.h"
#include "tokenizer/vectors.h"

namespace tapml {
namespace {

using testing::run_command;
using testing::shared_path;
using testing::shell_quote;

std::string tapml(const std::string& args) { return testing::tapml_command(args); }
std::string q(const std::string& s) { return shell_quote(s); }

std::string stories_bin() { return shared_path("models/stories260K/stories260K.bin"); }
std::string stories_gguf() { return shared_path("models/stories260K/stories260K.gguf"); }
std::string tok512() { return shared_path("models/stories260K/tok512.bin"); }

// A failing command must say what is wrong in exactly one line on stderr.
void expect_one_line_error(const testing::CommandResult& r, const std::string& needle) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "stderr is not one line: " << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
}

std::string write_file(const std::string& name, const std::string& bytes) {
  std::string path = testing::temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(Cli, RunJsonGivesGoldenTokens) {
  testing::Golden g = testing::stories_goldens().at(2);
  for (const char* backend : {"ref", "cpu"}) {
    auto r = run_command(tapml("run --model " + q(stories_bin()) + " --tokenizer " + q(tok512()) +
                               " --prompt " + q(g.prompt) + " --steps " + std::to_string(g.steps) +
                               " --json --backend " + backend));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j.at("token_ids").get<std::vector<int>>(), g.token_ids) << backend;
    EXPECT_EQ(j.at("text").get<std::string>(), g.text);
  }
}

TEST(Cli, RunWithAnF16KvCacheGivesGoldenTokens) {
  testing::Golden g = testing::stories_goldens().at(2);
  auto r = run_command(tapml("run --model " + q(stories_bin()) + " --tokenizer " + q(tok512()) +
                             " --prompt " + q(g.prompt) + " --steps " + std::to_string(g.steps) +
                             " --json --kv-cache f16"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("kv_cache"), "f16");
  EXPECT_EQ(j.at("token_ids").get<std::vector<int>>(), g.token_ids);
  expect_one_line_error(run_command(tapml("run --model " + q(stories_bin()) + " --tokenizer " +
                                          q(tok512()) + " --prompt hi --kv-cache f8")),
                        "--kv-cache");
}

TEST(Cli, RunGgufWithPlacementAndLogits) {
  std::vector<float> want;
  testing::Golden g = testing::stories_logits_golden(&want);
  std::string out = testing::temp_dir() + "/logits.f32";
  auto r = run_command(tapml("run --model " + q(stories_gguf()) + " --prompt " + q(g.prompt) +
                             " --steps 64 --json --backend ref --place 'matmul=cpu' --logits-out " +
                             q(out)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("token_ids").get<std::vector<int>>(), g.token_ids);
  std::string bytes = read_file(out);
  ASSERT_EQ(bytes.size(), want.size() * 4);
  const float* got = reinterpret_cast<const float*>(bytes.data());
  float worst = 0, largest = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::fabs(got[i] - want[i]));
    largest = std::max(largest, std::fabs(want[i]));
  }
  EXPECT_LE(worst, 1e-4f * largest);
}

TEST(Cli, RunJsonSurvivesTextThatIsNotUtf8) {
  // 0xFF becomes a byte token; the prompt and the decoded text then hold a lone 0xFF.
  auto r = run_command(tapml("run --model " + q(stories_gguf()) +
                             " --prompt \"$(printf 'a\\377')\" --steps 8 --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_NE(j.at("prompt").get<std::string>().find("\xEF\xBF\xBD"), std::string::npos);
  auto ids = j.at("token_ids").get<std::vector<int>>();
  EXPECT_NE(std::find(ids.begin(), ids.end(), 3 + 0xFF), ids.end());  // the <0xFF> byte token
}

TEST(Cli, RunTextModeStreamsTheStory) {
  auto r = run_command(tapml("run --model " + q(stories_bin()) + " --tokenizer " + q(tok512()) +
                             " --prompt 'Once upon a time' --steps 40"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time, there was a little girl named Lily.", 0), 0u) << r.out;
  EXPECT_NE(r.err.find("tok/s"), std::string::npos);
}

TEST(Cli, RunsTheF16TinyRandomModel) {
  auto r = run_command(tapml("run --model " +
                             q(shared_path("models/tiny-random/llama-2-tiny-random.gguf")) +
                             " --prompt 'Hello world' --steps 16 --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto ids = nlohmann::json::parse(r.out).at("token_ids").get<std::vector<int>>();
  EXPECT_GE(ids.size(), 4u);
  EXPECT_EQ(ids[0], 1);
}

std::vector<int> ids_of(const std::string& line) {
  std::istringstream in(line);
  std::vector<int> ids;
  for (int id; in >> id;) ids.push_back(id);
  return ids;
}

// llama.cpp's test vectors through `tapml tokenize`, for one vocabulary of each kind: the
// SentencePiece one, GPT-2's split, Llama 3's (whole-word pieces skip the merges) and
// DeepSeek LLM's chain of splits. tests/tokenizer checks every vocabulary in-process.
std::vector<std::string> vector_inputs(const std::string& base) {
  return read_vector_inputs(base + ".inp");
}

// --text, one process per input, on a SentencePiece and a byte-level vocabulary.
TEST(Cli, TokenizeTextGivesTheVectorsIds) {
  for (const char* name : {"llama-spm", "llama-bpe"}) {
    const std::string base = shared_path(std::string("vocab/ggml-vocab-") + name + ".gguf");
    std::vector<std::string> inputs = vector_inputs(base), outputs;
    std::istringstream lines(read_file(base + ".out"));
    for (std::string line; std::getline(lines, line);) outputs.push_back(line);
    ASSERT_EQ(inputs.size(), outputs.size()) << name;
    ASSERT_GT(inputs.size(), 20u) << name;
    size_t passed = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
      auto r = run_command(tapml("tokenize --model " + q(base) + " --text " + q(inputs[i])));
      ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
      bool same = ids_of(r.out) == ids_of(outputs[i]);
      EXPECT_TRUE(same) << name << " input " << i << ": '" << inputs[i] << "'";
      passed += same;
    }
    EXPECT_EQ(passed, inputs.size()) << name;
  }
}

// tapml tokenize --vectors: every vocabulary with llama.cpp test vectors, every case.
class TokenizeVectors : public ::testing::TestWithParam<const char*> {};

TEST_P(TokenizeVectors, AllMatch) {
  const std::string base = shared_path(std::string("vocab/ggml-vocab-") + GetParam() + ".gguf");
  const size_t n = vector_inputs(base).size();
  ASSERT_GT(n, 20u);
  auto r = run_command(tapml("tokenize --model " + q(base) + " --vectors " + q(base + ".inp")));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string want = std::to_string(n) + "/" + std::to_string(n) + " vectors match";
  EXPECT_NE(r.out.find(want), std::string::npos) << r.out << r.err;
  std::cout << GetParam() << ": " << r.out.substr(r.out.rfind('\n', r.out.size() - 2) + 1);
}

INSTANTIATE_TEST_SUITE_P(Cli, TokenizeVectors,
                         ::testing::Values("llama-spm", "phi-3", "gpt-2", "llama-bpe", "qwen2",
                                           "deepseek-llm", "deepseek-coder", "falcon", "starcoder",
                                           "refact", "mpt", "gemma-4"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (c == '-') c = '_';
                           return s;
                         });

// A wrong expectation is reported case by case and fails the command.
TEST(Cli, TokenizeVectorsReportsMismatches) {
  const std::string base = shared_path("vocab/ggml-vocab-gpt-2.gguf");
  // gpt-2's inputs against llama-bpe's ids: the same texts, other ids.
  std::string dir = testing::temp_dir();
  std::filesystem::copy_file(base + ".inp", dir + "/v.inp");
  std::filesystem::copy_file(shared_path("vocab/ggml-vocab-llama-bpe.gguf.out"), dir + "/v.out");
  auto r = run_command(tapml("tokenize --model " + q(base) + " --vectors " + q(dir + "/v.inp")));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("MISMATCH"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("vectors differ"), std::string::npos) << r.err;
}

// A GGUF that cannot run is still described from its header, with the reason.
TEST(Cli, InfoDescribesAFileItCannotRun) {
  auto r =
      run_command(tapml("info --json --model " + q(shared_path("vocab/ggml-vocab-gemma-4.gguf"))));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("arch"), "gemma4");
  EXPECT_FALSE(j.at("runnable").get<bool>());
  EXPECT_NE(j.at("why_not").get<std::string>().find("gemma4"), std::string::npos);
  EXPECT_NE(j.at("tokenizer").get<std::string>().find("262144 tokens"), std::string::npos);
  r = run_command(tapml("info --model " + q(shared_path("vocab/ggml-vocab-bert-bge.gguf"))));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("cannot run"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("WordPiece, 30522 tokens"), std::string::npos) << r.out;
}

TEST(Cli, InfoDescribesTheModel) {
  auto r = run_command(tapml("info --model " + q(stories_gguf()) + " --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["config"]["n_kv_heads"], 4);
  EXPECT_EQ(j["tensors"].size(), 48u);
  r = run_command(tapml("info --backends"));
  EXPECT_NE(r.out.find("ref"), std::string::npos);
  EXPECT_NE(r.out.find("cpu"), std::string::npos);
  r = run_command(tapml("info --backends --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<std::string> schemes;
  const nlohmann::json listing = nlohmann::json::parse(r.out);
  for (const auto& k : listing.at("backends")) {
    schemes.insert(k.at("scheme").get<std::string>());
    EXPECT_TRUE(k.at("devices").is_array());
  }
  for (const char* s : {"ref", "cpu", "faulty", "tcp"}) EXPECT_TRUE(schemes.count(s)) << s;
}

TEST(CliErrors, MissingModelFile) {
  expect_one_line_error(run_command(tapml("run --model /nonexistent/model.gguf")),
                        "/nonexistent/model.gguf");
}

TEST(CliErrors, WrongMagic) {
  std::string p = write_file("junk.bin", std::string(4096, 'x'));
  expect_one_line_error(run_command(tapml("run --model " + q(p))), p);
}

TEST(CliErrors, TruncatedGguf) {
  std::string bytes = read_file(stories_gguf());
  for (size_t cut : {size_t(10), size_t(300), bytes.size() / 2, bytes.size() - 1}) {
    std::string p = write_file("cut" + std::to_string(cut) + ".gguf", bytes.substr(0, cut));
    auto r = run_command(tapml("run --model " + q(p) + " --steps 4"));
    expect_one_line_error(r, p);
    EXPECT_TRUE(r.err.find("truncated") != std::string::npos ||
                r.err.find("past the end") != std::string::npos)
        << r.err;
  }
}

TEST(CliErrors, UnknownArchitecture) {
  gguf::Writer w;
  w.set_string("general.architecture", "gpt2");
  std::string p = testing::temp_dir() + "/gpt2.gguf";
  w.write(p);
  expect_one_line_error(run_command(tapml("run --model " + q(p))), "gpt2");
}

TEST(CliErrors, TokenizerSizeDiffersFromModel) {
  auto r = run_command(tapml("run --model " +
                             q(shared_path("models/tiny-random/llama-2-tiny-random.gguf")) +
                             " --tokenizer " + q(tok512())));
  expect_one_line_error(r, "32000");
}

TEST(CliErrors, LlamaCheckpointWithoutTokenizer) {
  expect_one_line_error(run_command(tapml("run --model " + q(stories_bin()))), "--tokenizer");
}

TEST(CliErrors, TokenizeInputs) {
  const std::string vocab = q(shared_path("vocab/ggml-vocab-gpt-2.gguf"));
  auto r = run_command(tapml("tokenize --model " + vocab));
  expect_one_line_error(r, "exactly one of --text, --file and --vectors");
  EXPECT_EQ(r.exit_code, 2);
  expect_one_line_error(run_command(tapml("tokenize --model " + vocab + " --text a --file x")),
                        "exactly one");
  std::string dir = testing::temp_dir();
  expect_one_line_error(run_command(tapml("tokenize --model " + vocab + " --file " + q(dir))),
                        "is a folder, not a file");
  expect_one_line_error(
      run_command(tapml("tokenize --model " + vocab + " --file " + q(dir + "/missing.txt"))),
      "cannot open");
  // Vectors without their .out, and an .out that holds fewer lines than there are inputs.
  const std::string inp = dir + "/v.inp";
  std::ofstream(inp) << "a\n__ggml_vocab_test__\nb\n__ggml_vocab_test__\n";
  expect_one_line_error(run_command(tapml("tokenize --model " + vocab + " --vectors " + q(inp))),
                        "v.out: cannot open");
  std::ofstream(dir + "/v.out") << "64\n";
  expect_one_line_error(run_command(tapml("tokenize --model " + vocab + " --vectors " + q(inp))),
                        "holds 2 inputs but");
}

TEST(CliErrors, BadFlagsAndUris) {
  auto base = "run --model " + q(stories_gguf()) + " ";
  expect_one_line_error(run_command(tapml(base + "--steps 8 --backend nosuch")), "unknown backend");
  expect_one_line_error(run_command(tapml(base + "--steps 8 --backend 'cpu?threads=zero'")),
                        "threads");
  expect_one_line_error(run_command(tapml(base + "--steps 8 --backend 'cpu?thread=2'")),
                        "unknown parameter");
  expect_one_line_error(run_command(tapml(base + "--steps 8 --place 'matmul'")), "REGEX=BACKEND");
  expect_one_line_error(run_command(tapml(base + "--steps 8 --place '*x=cpu'")),
                        "regular expression");
  expect_one_line_error(run_command(tapml(base + "--steps 8 --place 'matmul=nosuch'")),
                        "unknown backend");
  expect_one_line_error(run_command(tapml(base + "--steps 10000000")), "--steps");
  expect_one_line_error(run_command(tapml(base + "--prompt 'a long prompt here' --steps 2")),
                        "prompt");
  expect_one_line_error(run_command(tapml(base + "--no-such-flag")), "--no-such-flag");
  expect_one_line_error(run_command(tapml("frobnicate")), "frobnicate");
  expect_one_line_error(run_command(tapml(base + "--steps many")), "--steps");
}

}  // namespace
}  // namespace tapml

// `tapml convert` as a user meets it: a file `tapml run` runs to the golden ids, notes on what
// llama.cpp will run differently, exit 2 for what the command line got wrong, exit 3 for a
// folder it cannot read, and never a partial file or a replaced model.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/shared.h"

namespace tapml {
namespace {

namespace fs = std::filesystem;
using testing::run_command;
using testing::shared_path;

std::string tapml(const std::string& args) { return testing::tapml_command(args); }
std::string q(const std::string& s) { return testing::shell_quote(s); }

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Nothing but `expected` in the folder (no temporary file left behind).
void expect_only(const std::string& dir, std::vector<std::string> expected) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names, expected);
}

TEST(ConvertCli, WritesAFileThatRunsToTheGoldenIds) {
  const std::string folder = shared_path("models/families/mistral");
  const std::string dir = testing::temp_dir(), out = dir + "/mistral.gguf";
  auto r = run_command(tapml("convert --model " + q(folder) + " --out " + q(out) + " -q"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("llama (mistral family)"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("note: llama.cpp's llama has no sliding window"), std::string::npos)
      << r.err;
  expect_only(dir, {"mistral.gguf"});

  nlohmann::json golden = nlohmann::json::parse(slurp(folder + "/golden.json"));
  std::string ids;
  for (int id : golden["prompt_ids"]) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  std::vector<int> tokens = golden["token_ids"].get<std::vector<int>>();
  auto run = run_command(tapml("run --model " + q(out) + " --prompt-ids " + ids + " --steps " +
                               std::to_string(tokens.size()) + " --json --backend ref"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  std::vector<int> got = nlohmann::json::parse(run.out).at("token_ids").get<std::vector<int>>();
  ASSERT_EQ(got.size(), tokens.size() + 1);
  got.pop_back();
  EXPECT_EQ(got, tokens);
}

TEST(ConvertCli, F16AndBf16HalveTheMatrices) {
  const std::string folder = shared_path("models/families/qwen2");
  const std::string dir = testing::temp_dir();
  uintmax_t size32 = 0;
  for (const char* dtype : {"f32", "f16", "bf16"}) {
    const std::string out = dir + "/" + dtype + ".gguf";
    auto r = run_command(
        tapml("convert --model " + q(folder) + " --out " + q(out) + " --dtype " + dtype + " -q"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find(std::string("of ") + dtype + " weights"), std::string::npos) << r.out;
    if (std::string(dtype) == "f32")
      size32 = fs::file_size(out);
    else
      EXPECT_LT(fs::file_size(out), size32 * 6 / 10) << dtype;
  }
}

TEST(ConvertCli, ShowsProgressUnlessQuiet) {
  const std::string folder = q(shared_path("models/families/llama"));
  const std::string dir = testing::temp_dir();
  auto r = run_command("TAPML_PROGRESS_SECONDS=0 " +
                       tapml("convert --model " + folder + " --out " + q(dir + "/a.gguf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("converting: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" KiB"), std::string::npos) << r.err;
  auto quiet =
      run_command("TAPML_PROGRESS_SECONDS=0 " +
                  tapml("convert --model " + folder + " --out " + q(dir + "/b.gguf") + " -q"));
  ASSERT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.err.find("converting"), std::string::npos) << quiet.err;
}

TEST(ConvertCli, BadDtypeIsAUsageError) {
  const std::string dir = testing::temp_dir(), out = dir + "/x.gguf";
  auto r = run_command(tapml("convert --model " + q(shared_path("models/families/llama")) +
                             " --out " + q(out) + " --dtype q9_9"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--dtype"), std::string::npos) << r.err;
  expect_only(dir, {});
}

TEST(ConvertCli, AFolderItCannotReadIsAnErrorAndLeavesNoFile) {
  const std::string dir = testing::temp_dir(), out = dir + "/x.gguf";
  auto missing =
      run_command(tapml("convert --model " + q(dir + "/no-such-folder") + " --out " + q(out)));
  EXPECT_EQ(missing.exit_code, 3) << missing.err;
  EXPECT_NE(missing.err.find("no-such-folder"), std::string::npos) << missing.err;

  // A folder whose safetensors file is cut short.
  const std::string broken = dir + "/broken";
  fs::create_directories(broken);
  fs::copy_file(shared_path("models/families/llama/config.json"), broken + "/config.json");
  std::string st = slurp(shared_path("models/families/llama/model.safetensors"));
  std::ofstream(broken + "/model.safetensors", std::ios::binary) << st.substr(0, st.size() / 2);
  auto r = run_command(tapml("convert --model " + q(broken) + " --out " + q(out)));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << r.err;
  expect_only(dir, {"broken"});
}

TEST(ConvertCli, NeverReplacesAModel) {
  const std::string dir = testing::temp_dir(), out = dir + "/model.gguf";
  fs::copy_file(shared_path("models/stories260K/stories260K.gguf"), out);
  const std::string before = slurp(out);
  auto r = run_command(
      tapml("convert --model " + q(shared_path("models/families/llama")) + " --out " + q(out)));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("refusing to replace"), std::string::npos) << r.err;
  EXPECT_EQ(slurp(out), before);
  // A folder is no output either.
  auto d = run_command(
      tapml("convert --model " + q(shared_path("models/families/llama")) + " --out " + q(dir)));
  EXPECT_EQ(d.exit_code, 2) << d.err;
}

TEST(ConvertCli, HelpShowsAnExample) {
  auto r = run_command(tapml("convert --help"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("tapml convert --model"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--dtype"), std::string::npos);
}

}  // namespace
}  // namespace tapml

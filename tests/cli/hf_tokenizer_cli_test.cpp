// `tapml tokenize` with Hugging Face tokenizer.json files: given with --tokenizer, and found
// beside a model folder's weights.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/shared.h"

namespace tapml {
namespace {

namespace fs = std::filesystem;
using testing::run_command;
using testing::shared_path;
using testing::shell_quote;

// GPT-2's byte-to-unicode text of byte b, as UTF-8.
std::string byte_piece(int b) {
  bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  int cp = b;
  if (!printable) {
    cp = 256;
    for (int i = 0; i < b; ++i)
      cp += !((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255));
  }
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

TEST(HfTokenizerCli, TokenizeWithTokenizerJson) {
  // MPT's vocabulary is GPT-NeoX's, converted with its pre-tokenizer named (GPT-NeoX's own GGUF
  // names none and so splits llama.cpp's default way, not as tokenizer.json says).
  const std::string gguf = shared_path("vocab/ggml-vocab-mpt.gguf");
  const std::string text = shell_quote("Hello world, 3333 caf\xC3\xA9 <|endoftext|>");
  auto embedded = run_command(testing::tapml_command("tokenize --model " + shell_quote(gguf) +
                                                     " --parse-special --text " + text));
  auto from_json = run_command(
      testing::tapml_command("tokenize --model " + shell_quote(gguf) + " --tokenizer " +
                             shell_quote(shared_path("tokenizers/gpt-neox-20b_tokenizer.json")) +
                             " --parse-special --text " + text));
  ASSERT_EQ(from_json.exit_code, 0) << from_json.err;
  EXPECT_EQ(from_json.out, embedded.out);

  // A model folder (the tiny GPT-NeoX, 512 ids) with a tokenizer.json of 261 tokens.
  std::string dir = testing::temp_dir();
  const std::string family = shared_path("models/families/gpt_neox");
  fs::copy_file(family + "/config.json", dir + "/config.json");
  fs::create_symlink(family + "/model.safetensors", dir + "/model.safetensors");
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_piece(b)] = b;
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["hello"] = 259;
  nlohmann::json tok = {
      {"added_tokens", {{{"id", 260}, {"content", "<|endoftext|>"}, {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"h e", "l l", "he ll", "hell o"}}}}};
  std::ofstream(dir + "/tokenizer.json") << tok.dump();
  auto r = run_command(
      testing::tapml_command("tokenize --model " + shell_quote(dir) + " --json --text ' hello'"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("token_ids"), (std::vector<int>{32, 259})) << r.out;  // "Ġ", "hello"
}

}  // namespace
}  // namespace tapml

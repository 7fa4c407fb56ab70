// Hugging Face tokenizer.json files read into a Vocab: the same ids as the GGUF conversions
// of the same tokenizers on every llama.cpp test input, and one clear Error for every defect.
#include "tokenizer/hf_tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "format/gguf.h"
#include "support/shared.h"
#include "tokenizer/load.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vectors.h"

namespace tapml {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::shared_path;

const std::string kNeoxJson = "tokenizers/gpt-neox-20b_tokenizer.json";
const std::string kNeoxGguf = "vocab/ggml-vocab-gpt-neox.gguf";
const std::string kLlamaJson = "tokenizers/llama2_tokenizer.json";
const std::string kLlamaGguf = "vocab/ggml-vocab-llama-spm.gguf";

// Every input of every vocab/*.inp file.
std::vector<std::string> all_inputs() {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(shared_path("vocab")))
    if (e.path().extension() == ".inp") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  std::vector<std::string> inputs;
  for (const std::string& f : files) {
    std::vector<std::string> more = read_vector_inputs(f);
    inputs.insert(inputs.end(), more.begin(), more.end());
  }
  EXPECT_GE(files.size(), 13u);
  return inputs;
}

Tokenizer json_tokenizer(const std::string& file) {
  return Tokenizer(load_hf_tokenizer_json(shared_path(file)));
}
Tokenizer gguf_tokenizer(const std::string& file) {
  return Tokenizer(load_gguf_vocab(gguf::File::open(shared_path(file))));
}

// Encodes every input through both tokenizers (without and with BOS, without and with
// parse_special) and counts the inputs on which all four agree.
void expect_same_ids(const std::string& json_file, const std::string& gguf_file) {
  Tokenizer hf = json_tokenizer(json_file);
  Tokenizer gg = gguf_tokenizer(gguf_file);
  std::vector<std::string> inputs = all_inputs();
  size_t same = 0;
  for (const std::string& text : inputs) {
    bool all = true;
    for (bool bos : {false, true})
      for (bool special : {false, true}) {
        std::vector<int> a = hf.encode(text, bos, special), b = gg.encode(text, bos, special);
        EXPECT_EQ(a, b) << json_file << " vs " << gguf_file << ": [" << text << "] bos " << bos
                        << " special " << special;
        all = all && a == b;
      }
    same += all;
  }
  std::cout << json_file << " vs " << gguf_file << ": " << same << "/" << inputs.size()
            << " inputs give the same ids\n";
  EXPECT_EQ(same, inputs.size());
  EXPECT_GE(inputs.size(), 13u * 46u);
}

// GPT-NeoX's tokenizer.json splits with ByteLevel's own regex, GPT-2's. Its GGUF file names
// no pre-tokenizer, and load_gguf_vocab then uses GPT-2's split too (llama.cpp's fallback,
// "default", would also cut punctuation runs and digit triples: other ids on 13 of the 46
// distinct inputs). So does MPT's GGUF, the same vocabulary converted with its pre-tokenizer
// named ("mpt", GPT-2's regex), whose .out ids come from the tokenizers library.
TEST(HfTokenizer, GptNeoxSameIdsAsGguf) {
  expect_same_ids(kNeoxJson, kNeoxGguf);
  expect_same_ids(kNeoxJson, "vocab/ggml-vocab-mpt.gguf");
}
TEST(HfTokenizer, Llama2SameIdsAsGguf) { expect_same_ids(kLlamaJson, kLlamaGguf); }

// The tokenizer.json files give the ids the tokenizers library itself gives for them
// (tests/data/hf_tokenizers_truth.json, made with tokenizers 0.23.2).
TEST(HfTokenizer, SameIdsAsTheTokenizersLibrary) {
  std::ifstream in(std::string(TAPML_SOURCE_DIR) + "/tests/data/hf_tokenizers_truth.json");
  json truth = json::parse(in);
  for (const char* file : {"gpt-neox-20b_tokenizer.json", "llama2_tokenizer.json"}) {
    Tokenizer tok = json_tokenizer(std::string("tokenizers/") + file);
    size_t same = 0;
    for (const json& c : truth.at(file)) {
      std::string text = c.at("text");
      std::vector<int> want = c.at("ids"), got = tok.encode(text, false);
      EXPECT_EQ(got, want) << file << ": [" << text << "]";
      same += got == want;
    }
    std::cout << file << ": " << same << "/" << truth.at(file).size() << " library cases\n";
    EXPECT_EQ(same, truth.at(file).size());
    EXPECT_GT(same, 50u);
  }
}

// The ids llama.cpp's vectors expect (from the tokenizers library), for the vocabularies
// that are these tokenizers: MPT's is GPT-NeoX's, llama-spm's is Llama 2's.
TEST(HfTokenizer, ExpectedIdsOfTheTokenizersLibrary) {
  for (auto [json_file, vectors] : {std::pair{kNeoxJson, "vocab/ggml-vocab-mpt.gguf"},
                                    std::pair{kLlamaJson, "vocab/ggml-vocab-llama-spm.gguf"}}) {
    Tokenizer tok = json_tokenizer(json_file);
    std::ifstream out(shared_path(std::string(vectors) + ".out"));
    size_t n = 0, same = 0;
    for (const std::string& text : read_vector_inputs(shared_path(std::string(vectors) + ".inp"))) {
      std::string line;
      ASSERT_TRUE(std::getline(out, line)) << vectors;
      std::vector<int> expected;
      std::istringstream ids(line);
      for (int id; ids >> id;) expected.push_back(id);
      std::vector<int> got = tok.encode(text, false);
      EXPECT_EQ(got, expected) << json_file << ": [" << text << "]";
      same += got == expected;
      ++n;
    }
    std::cout << json_file << ": " << same << "/" << n << " of " << vectors << "'s vectors\n";
    EXPECT_EQ(n, 46u);
    EXPECT_EQ(same, n);
  }
}

// The vocabularies themselves agree with the GGUF conversions, up to the padding the GGUF
// file adds (GPT-NeoX's embedding has 50432 rows, its tokenizer 50277 tokens).
TEST(HfTokenizer, GptNeoxVocabMatchesGguf) {
  Tokenizer hf = json_tokenizer(kNeoxJson);
  Tokenizer gg = gguf_tokenizer(kNeoxGguf);
  const Vocab &h = hf.vocab(), &g = gg.vocab();
  ASSERT_EQ(h.size(), 50277);
  EXPECT_EQ(h.model, VocabModel::Bpe);
  EXPECT_TRUE(h.byte_level);
  EXPECT_EQ(h.pre, "gpt-2");
  EXPECT_TRUE(h.nfc);
  EXPECT_EQ(h.merges, g.merges);
  EXPECT_TRUE(std::equal(h.pieces.begin(), h.pieces.end(), g.pieces.begin()));
  EXPECT_TRUE(std::equal(h.kinds.begin(), h.kinds.end(), g.kinds.begin()));
  EXPECT_EQ(h.bos, g.bos);
  EXPECT_EQ(h.eos, g.eos);
  EXPECT_EQ(h.unk, g.unk);
  EXPECT_EQ(h.add_bos, g.add_bos);
  EXPECT_EQ(h.add_eos, g.add_eos);
  EXPECT_EQ(h.add_space_prefix, g.add_space_prefix);
  EXPECT_EQ(h.eog, g.eog);
}

TEST(HfTokenizer, Llama2VocabMatchesGguf) {
  Tokenizer hf = json_tokenizer(kLlamaJson);
  Tokenizer gg = gguf_tokenizer(kLlamaGguf);
  const Vocab &h = hf.vocab(), &g = gg.vocab();
  EXPECT_EQ(h.model, VocabModel::Spm);
  EXPECT_FALSE(h.nfc);
  // The shared tokenizer.json has "" for piece 31353, which Llama 2's tokenizer.model (and
  // so the GGUF file) has as U+2028 LINE SEPARATOR; the tokenizers library accepts the empty
  // piece, and so does tapml. Every other piece is the same.
  ASSERT_EQ(h.size(), g.size());
  EXPECT_EQ(h.pieces[31353], "");
  EXPECT_EQ(g.pieces[31353], "\xE2\x80\xA8");
  for (int i = 0; i < h.size(); ++i) {
    if (i != 31353) {
      EXPECT_EQ(h.pieces[size_t(i)], g.pieces[size_t(i)]) << i;
    }
  }
  EXPECT_EQ(h.kinds, g.kinds);
  EXPECT_EQ(h.bos, 1);
  EXPECT_EQ(h.eos, 2);
  EXPECT_EQ(h.unk, 0);
  EXPECT_EQ(h.add_bos, g.add_bos);
  EXPECT_EQ(h.add_eos, g.add_eos);
  EXPECT_TRUE(h.add_space_prefix);
  EXPECT_EQ(h.space, g.space);
  EXPECT_EQ(h.eog, g.eog);
  // Merge order: "▁t" is made by the first merge, the space runs by the last ones (their
  // SentencePiece scores are -1e9, below every other piece).
  EXPECT_EQ(h.scores[260], 0.0f);  // "▁t"
  EXPECT_LT(h.scores[259], h.scores[260]);
}

// decode(encode(x)) == x: byte-level pieces cover every byte; SentencePiece-style loses only
// U+2581, which it cannot tell from an escaped space.
TEST(HfTokenizer, RoundTrips) {
  const std::string lower_block = "\xE2\x96\x81";
  for (const std::string& file : {kNeoxJson, kLlamaJson}) {
    Tokenizer tok = json_tokenizer(file);
    size_t n = 0;
    for (const std::string& text : all_inputs()) {
      std::string expected = text;
      if (!tok.vocab().byte_level)
        for (size_t p; (p = expected.find(lower_block)) != std::string::npos;)
          expected.replace(p, lower_block.size(), " ");
      EXPECT_EQ(tok.decode(tok.encode(text, false)), expected) << file << ": [" << text << "]";
      EXPECT_EQ(tok.decode(tok.encode(text, true)), expected) << file << ": [" << text << "]";
      ++n;
    }
    std::cout << file << ": " << n << " round trips\n";
  }
}

TEST(HfTokenizer, SpecialAndAddedTokens) {
  Tokenizer llama = json_tokenizer(kLlamaJson);
  std::vector<int> hi = llama.encode("Hi", false), framed = {1};
  framed.insert(framed.end(), hi.begin(), hi.end());
  framed.push_back(2);
  EXPECT_EQ(llama.encode("<s>Hi</s>", false, true), framed);
  std::vector<int> plain = llama.encode("<s>Hi</s>", false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);  // text unless parse_special
  EXPECT_EQ(llama.encode("Hi", true).front(), 1);           // the template's BOS

  Tokenizer neox = json_tokenizer(kNeoxJson);
  EXPECT_EQ(neox.encode("<|endoftext|>", false, true), std::vector<int>{0});
  EXPECT_EQ(neox.encode("<|padding|>", false, true), std::vector<int>{1});
  EXPECT_NE(neox.encode("<|endoftext|>", false), std::vector<int>{0});
  // Its non-special added tokens, runs of spaces, are found in any text (UserDefined).
  const std::string spaces(24, ' ');
  EXPECT_EQ(neox.vocab().kinds[50254], TokenKind::UserDefined);
  std::vector<int> ids = neox.encode("a" + spaces + "b", false);
  EXPECT_NE(std::find(ids.begin(), ids.end(), 50254), ids.end());
  EXPECT_EQ(neox.decode(ids), "a" + spaces + "b");
  EXPECT_FALSE(neox.vocab().add_bos);
}

// GPT-NeoX's normalizer is NFC: a decomposed "é" tokenizes as the composed one, as in the
// tokenizers library. GGUF files do not carry the normalizer, so the GGUF vocabulary does not.
TEST(HfTokenizer, NfcNormalizer) {
  Tokenizer hf = json_tokenizer(kNeoxJson);
  Tokenizer gg = gguf_tokenizer(kNeoxGguf);
  const std::string composed = "caf\xC3\xA9", decomposed = "cafe\xCC\x81";
  EXPECT_EQ(hf.encode(decomposed, false), hf.encode(composed, false));
  EXPECT_EQ(hf.encode(decomposed, false), gg.encode(composed, false));
  EXPECT_NE(gg.encode(decomposed, false), gg.encode(composed, false));
  // Bytes that are not UTF-8 are left alone; the text around them is still composed. (GPT-NeoX
  // has pieces for the bytes of UTF-8 only: 0x80 is one, 0xFF is not.)
  const std::string raw =
      "e\xCC\x81\x80"
      "e\xCC\x81";
  EXPECT_EQ(hf.decode(hf.encode(raw, false)), "\xC3\xA9\x80\xC3\xA9");
}

// --- load_tokenizer ---------------------------------------------------------------------------

TEST(HfTokenizer, LoadTokenizerPadsToTheModelAndTakesFolders) {
  // A tokenizer.json and a tokenizer_config.json in a folder of their own.
  std::string dir = testing::temp_dir();
  fs::copy_file(shared_path(kLlamaJson), dir + "/tokenizer.json");
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"add_bos_token": false, "add_eos_token": true,
             "bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>",
             "pad_token": null, "unk_token": "<unk>"})";
  Tokenizer tok = load_tokenizer(dir, nullptr, 32000);
  EXPECT_FALSE(tok.vocab().add_bos);
  EXPECT_TRUE(tok.vocab().add_eos);
  EXPECT_EQ(tok.vocab().eos, 2);
  EXPECT_EQ(tok.vocab().pad, -1);
  // A Hugging Face model folder uses its tokenizer.json without being told.
  Tokenizer from_folder = load_tokenizer("", nullptr, 32064, dir);
  EXPECT_EQ(from_folder.vocab().size(), 32064);
  EXPECT_EQ(from_folder.vocab().pieces[32063], "[PAD32063]");
  EXPECT_EQ(from_folder.vocab().kinds[32063], TokenKind::Unused);
  EXPECT_EQ(from_folder.encode("Hello", false), tok.encode("Hello", false));
  try {
    load_tokenizer(dir + "/tokenizer.json", nullptr, 512);
    ADD_FAILURE() << "a 32000-token tokenizer for a 512-token model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than the model's 512"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(load_tokenizer("", nullptr, 512, testing::temp_dir()), Error);  // none there
}

// --- hostile files ----------------------------------------------------------------------------

// A small but complete byte-level tokenizer.json to break in the tests below.
json small_tokenizer() {
  return json::parse(R"({
    "version": "1.0",
    "added_tokens": [{"id": 4, "content": "<|endoftext|>", "special": true,
                      "single_word": false, "lstrip": false, "rstrip": false,
                      "normalized": false}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                      "use_regex": true},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true},
    "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true},
    "model": {"type": "BPE", "dropout": null, "unk_token": null,
              "continuing_subword_prefix": null, "end_of_word_suffix": null,
              "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
              "vocab": {"a": 0, "b": 1, "ab": 2, "abab": 3},
              "merges": ["a b", ["ab", "ab"]]}
  })");
}

TEST(HfTokenizerErrors, SmallFileWorks) {
  Tokenizer tok(parse_hf_tokenizer_json(small_tokenizer().dump(), "", "small.json"));
  EXPECT_EQ(tok.encode("ababab", false), (std::vector<int>{3, 2}));
  EXPECT_EQ(tok.encode("ab<|endoftext|>", false, true), (std::vector<int>{2, 4}));
  EXPECT_EQ(tok.vocab().eos, 4);
  EXPECT_EQ(tok.vocab().merges, (std::vector<std::string>{"a b", "ab ab"}));
}

std::string parse_error(const std::string& text, const std::string& config = "") {
  try {
    parse_hf_tokenizer_json(text, config, "dir/tokenizer.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "no Error";
}

// Each broken file is refused with one line that names the file and the defect.
void expect_refused(const std::string& text, const std::string& needle,
                    const std::string& config = "") {
  std::string msg = parse_error(text, config);
  std::string file = config.empty() ? "dir/tokenizer.json" : "dir/tokenizer";
  EXPECT_NE(msg.find(file), std::string::npos) << msg;
  EXPECT_NE(msg.find(needle), std::string::npos) << "expected '" << needle << "' in: " << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

void expect_refused(const std::function<void(json&)>& change, const std::string& needle) {
  json j = small_tokenizer();
  change(j);
  expect_refused(j.dump(), needle);
}

TEST(HfTokenizerErrors, NotATokenizerJson) {
  expect_refused("", "is not valid JSON");
  expect_refused("{\"model\": ", "is not valid JSON");
  expect_refused("[1, 2]", "is an array, not a tokenizer.json object");
  expect_refused("{\"model\": {\"type\": \"BPE\"}, \"model\": {}}", "repeats the key 'model'");
  expect_refused(std::string(100, '[') + std::string(100, ']'), "nests deeper than");
  expect_refused("{\"model\": {\"vocab\": {\"a\xFF\": 0}}}", "is not valid JSON");
  expect_refused("{}", "model is missing");
}

TEST(HfTokenizerErrors, UnsupportedComponents) {
  expect_refused([](json& j) { j["model"]["type"] = "WordPiece"; },
                 "model.type 'WordPiece' is not supported");
  expect_refused([](json& j) { j["model"]["type"] = 7; }, "model.type is a number");
  expect_refused(
      [](json& j) {
        j["normalizer"] = {{"type", "Lowercase"}};
      },
      "normalizer type 'Lowercase' is not supported");
  expect_refused(
      [](json& j) {
        j["pre_tokenizer"] = {{"type", "Whitespace"}};
      },
      "pre_tokenizer type 'Whitespace' is not supported");
  expect_refused([](json& j) { j["pre_tokenizer"]["add_prefix_space"] = true; },
                 "add_prefix_space");
  expect_refused(
      [](json& j) {
        j["decoder"] = {{"type", "WordPiece"}};
      },
      "decoder type 'WordPiece' is not supported");
  expect_refused(
      [](json& j) {
        j["decoder"] = {{"type", "Metaspace"}};
      },
      "does not decode a byte-level vocabulary");
  expect_refused(
      [](json& j) {
        j["post_processor"] = {{"type", "BertProcessing"}};
      },
      "post_processor type 'BertProcessing' is not supported");
  expect_refused([](json& j) { j["model"]["dropout"] = 0.1; }, "BPE dropout");
  expect_refused([](json& j) { j["model"]["ignore_merges"] = true; }, "ignore_merges");
  expect_refused([](json& j) { j["model"]["continuing_subword_prefix"] = "##"; },
                 "continuing_subword_prefix '##'");
  expect_refused(
      [](json& j) {
        j["pre_tokenizer"] = {{"type", "Metaspace"},
                              {"replacement", "\xE2\x96\x81"},
                              {"prepend_scheme", "first"},
                              {"split", false}};
        j["model"]["byte_fallback"] = true;
        j["decoder"] = nullptr;
      },
      "prepend_scheme 'first'");
}

// A split tapml does not know must never pass as another: a Split with any other regex is
// refused, naming the regex.
TEST(HfTokenizerErrors, UnknownSplitIsRefused) {
  json split = json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "\\p{L}+|\\p{N}+"}, "behavior": "Isolated",
       "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
       "use_regex": false}]})");
  expect_refused([&](json& j) { j["pre_tokenizer"] = split; },
                 R"(splits by the regex '\\p{L}+|\\p{N}+', which tapml does not know)");
  split["pretokenizers"][0]["behavior"] = "Removed";
  expect_refused([&](json& j) { j["pre_tokenizer"] = split; }, "behavior 'Removed'");
  json three = json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Digits", "individual_digits": true}, {"type": "Punctuation"},
      {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}]})");
  expect_refused([&](json& j) { j["pre_tokenizer"] = three; },
                 "Sequence [Digits, Punctuation, ByteLevel] is not a split tapml knows");
  // Llama 3's regex is known, and comes with ignore_merges.
  split["pretokenizers"][0]["behavior"] = "Isolated";
  split["pretokenizers"][0]["pattern"]["Regex"] =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  expect_refused([&](json& j) { j["pre_tokenizer"] = split; },
                 "model.ignore_merges is false, but tapml runs the \"llama-bpe\" split with");
  json j = small_tokenizer();
  j["pre_tokenizer"] = split;
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(parse_hf_tokenizer_json(j.dump(), "", "llama3.json").pre, "llama-bpe");
}

TEST(HfTokenizerErrors, BadIds) {
  expect_refused([](json& j) { j["model"]["vocab"]["c"] = 1 << 30; }, "beyond the");
  expect_refused([](json& j) { j["model"]["vocab"]["c"] = -1; }, "cannot be negative");
  expect_refused([](json& j) { j["model"]["vocab"]["c"] = "5"; },
                 "model.vocab['c'] is a string, expected a token id");
  expect_refused([](json& j) { j["model"]["vocab"]["c"] = 1.5; }, "expected a token id");
  expect_refused([](json& j) { j["model"]["vocab"]["c"] = 1; },
                 "model.vocab gives id 1 to both 'b' and 'c'");
  expect_refused([](json& j) { j["model"]["vocab"]["c"] = 3000000; }, "ids run up to 3000000");
  expect_refused([](json& j) { j["model"]["vocab"] = json::array(); },
                 "model.vocab is an array, expected an object");
  expect_refused([](json& j) { j["model"]["vocab"] = json::object(); }, "model.vocab is empty");
  expect_refused([](json& j) { j["added_tokens"][0]["id"] = 0; },
                 "'<|endoftext|>' has id 0, which is already 'a'");
  expect_refused([](json& j) { j["added_tokens"][0]["content"] = "ab"; },
                 "'ab' has id 4, but the token already has id 2");
  expect_refused([](json& j) { j["added_tokens"][0]["special"] = "yes"; },
                 "added_tokens[0].special is a string, expected true or false");
  expect_refused([](json& j) { j["added_tokens"] = json::object(); },
                 "added_tokens is an object, expected an array");
}

TEST(HfTokenizerErrors, BadMerges) {
  expect_refused([](json& j) { j["model"]["merges"][0] = "a c"; },
                 "model.merges[0] names 'c', which model.vocab does not have");
  expect_refused([](json& j) { j["model"]["merges"][0] = "b a"; },
                 "model.merges[0] makes 'ba', which model.vocab does not have");
  expect_refused([](json& j) { j["model"]["merges"][0] = "a b ab"; },
                 "is not two pieces separated by one space");
  expect_refused(
      [](json& j) {
        j["model"]["merges"][0] = json::array({"", "ab"});
      },
      "model.merges[0] names an empty piece");
  expect_refused([](json& j) { j["model"]["merges"][0] = 3; }, "model.merges[0] is a number");
  expect_refused([](json& j) { j["model"]["merges"][1] = json::array({"ab"}); },
                 "model.merges[1] is an array, expected");
  expect_refused([](json& j) { j["model"]["merges"] = "a b"; }, "model.merges is a string");
  expect_refused([](json& j) { j["model"].erase("merges"); }, "model.merges is missing");
}

TEST(HfTokenizerErrors, BadConfig) {
  const std::string good = small_tokenizer().dump();
  expect_refused(good, "tokenizer_config.json is not valid JSON", "{");
  expect_refused(good, "tokenizer_config.json: is an array", "[]");
  expect_refused(good, "bos_token '<s>' is not a token of dir/tokenizer.json",
                 R"({"bos_token": "<s>"})");
  expect_refused(good, "add_bos_token is a string", R"({"add_bos_token": "true"})");
  expect_refused(good, "eos_token.content is missing", R"({"eos_token": {"lstrip": false}})");
  expect_refused(good, "add_prefix_space is true", R"({"add_prefix_space": true})");
  // add_bos_token without any token that could be BOS.
  json j = small_tokenizer();
  j["added_tokens"] = json::array();
  j["model"]["vocab"]["<|endoftext|>"] = 4;
  expect_refused(j.dump(), "add_bos_token is true, but no BOS token is named",
                 R"({"add_bos_token": true})");
}

TEST(HfTokenizerErrors, TemplateProcessing) {
  json tmpl = json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}}],
      "pair": [],
      "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [4],
                                           "tokens": ["<|endoftext|>"]}}})");
  json j = small_tokenizer();
  j["post_processor"] = tmpl;
  Vocab v = parse_hf_tokenizer_json(j.dump(), "", "t.json");
  EXPECT_TRUE(v.add_bos);
  EXPECT_EQ(v.bos, 4);
  EXPECT_FALSE(v.add_eos);
  tmpl["special_tokens"]["<|endoftext|>"]["ids"] = {4000};
  expect_refused([&](json& t) { t["post_processor"] = tmpl; }, "adds token id 4000, beyond");
  tmpl["special_tokens"]["<|endoftext|>"]["ids"] = {4, 4};
  expect_refused([&](json& t) { t["post_processor"] = tmpl; }, "has 2 ids");
  tmpl["special_tokens"]["<|endoftext|>"]["ids"] = {4};
  tmpl["single"][1]["Sequence"]["id"] = "B";
  expect_refused([&](json& t) { t["post_processor"] = tmpl; }, "puts sequence 'B'");
}

TEST(HfTokenizerErrors, Files) {
  EXPECT_THROW(load_hf_tokenizer_json("/nonexistent/tokenizer.json"), Error);
  std::string dir = testing::temp_dir();
  try {
    load_hf_tokenizer_json(dir);
    ADD_FAILURE() << "a folder read as a file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is a folder"), std::string::npos) << e.what();
  }
  try {
    load_tokenizer(dir, nullptr, 10);
    ADD_FAILURE() << "a folder without tokenizer.json";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a folder without tokenizer.json"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tapml

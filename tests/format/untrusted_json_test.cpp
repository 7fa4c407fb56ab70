// parse_untrusted_json and quote_name: what nlohmann accepts silently is refused, and every
// message stays on one line.
#include "format/untrusted_json.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "support/errors.h"

namespace tapml {
namespace {

using testing::contains;
using testing::error_of;

TEST(UntrustedJson, ParsesOrdinaryDocuments) {
  auto j = parse_untrusted_json<nlohmann::ordered_json>(
      R"({"b": [1, {"c": null}], "a": {"b": 2}}  )", "f");
  EXPECT_EQ(j["a"]["b"], 2);
  EXPECT_EQ(j.begin().key(), "b");  // order kept
  // The same key in different objects is fine.
  EXPECT_EQ(parse_untrusted_json<nlohmann::json>(R"({"x": {"x": {"x": 1}}})", "f")["x"]["x"]["x"],
            1);
  EXPECT_EQ(parse_untrusted_json<nlohmann::json>("7", "f"), 7);
}

TEST(UntrustedJson, RefusesRepeatedKeysWhereverTheyAre) {
  // nlohmann alone keeps the last value.
  EXPECT_EQ(nlohmann::json::parse(R"({"a": 1, "a": 2})")["a"], 2);
  EXPECT_EQ(error_of([] { parse_untrusted_json<nlohmann::json>(R"({"a": 1, "a": 2})", "f"); }),
            "f repeats the key 'a'");
  EXPECT_EQ(error_of([] {
              parse_untrusted_json<nlohmann::ordered_json>(R"({"a": {"b": [{"c": 1, "c": 1}]}})",
                                                           "PATH: header");
            }),
            "PATH: header repeats the key 'c' in 'a'.'b'");
}

TEST(UntrustedJson, BoundsNesting) {
  std::string deep = std::string(10, '[') + std::string(10, ']');
  EXPECT_NO_THROW(parse_untrusted_json<nlohmann::json>(deep, "f", 10));
  EXPECT_EQ(error_of([&] { parse_untrusted_json<nlohmann::json>("[" + deep + "]", "f", 10); }),
            "f nests deeper than 10 levels");
  // Far deeper than any stack could take if anything recursed over it.
  std::string abyss = std::string(1'000'000, '[') + std::string(1'000'000, ']');
  EXPECT_TRUE(contains(error_of([&] { parse_untrusted_json<nlohmann::json>(abyss, "f"); }),
                       "nests deeper than 64 levels"));
}

TEST(UntrustedJson, ParseErrorsAreOneAsciiLine) {
  for (std::string text : {"{\"a\xff\": 1}", "{\"a\n\": 1}", "{\n\n\"a\": \x01}"}) {
    std::string e = error_of([&] { parse_untrusted_json<nlohmann::json>(text, "f"); });
    EXPECT_TRUE(contains(e, "f is not valid JSON: parse error at line")) << e;
    for (char c : e) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << e;
  }
  EXPECT_TRUE(contains(error_of([] { parse_untrusted_json<nlohmann::json>("{} x", "f"); }),
                       "f is not valid JSON"));
}

TEST(UntrustedJson, QuoteName) {
  EXPECT_EQ(quote_name("model.embed_tokens.weight"), "'model.embed_tokens.weight'");
  EXPECT_EQ(quote_name("a'b\\c\nd\x7f"), "'a\\'b\\\\c\\x0ad\\x7f'");
  EXPECT_EQ(quote_name("h\xc3\xa9"), "'h\xc3\xa9'");  // UTF-8 kept
  // Cut at 120 bytes, never inside a UTF-8 sequence.
  std::string long_name = std::string(119, 'x') + "\xc3\xa9" + "tail";
  EXPECT_EQ(quote_name(long_name), "'" + std::string(119, 'x') + "...'");
}

}  // namespace
}  // namespace tapml

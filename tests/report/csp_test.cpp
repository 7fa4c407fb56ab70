#include "report/csp.h"

#include <gtest/gtest.h>

#include <string>

namespace tapml {
namespace {

std::string hex(const std::array<uint8_t, 32>& d) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : d) s += kDigits[b >> 4], s += kDigits[b & 15];
  return s;
}

TEST(Csp, Sha256MatchesTheStandardVectors) {
  EXPECT_EQ(hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // 56 bytes: the length no longer fits the first padding block.
  EXPECT_EQ(hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(hex(sha256(std::string(1000000, 'a'))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Csp, ScriptHashIsTheCspSourceForm) {
  const uint8_t bytes[] = {'M', 'a'};
  EXPECT_EQ(base64(bytes, 2), "TWE=");
  EXPECT_EQ(base64(bytes, 1), "TQ==");
  EXPECT_EQ(csp_script_hash(""), "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='");
}

}  // namespace
}  // namespace tapml

// Backend URI parameters are taken at their word: a parameter given twice, or a number that is
// malformed or out of range, is an error naming the parameter, never a silent pick or clamp.
// Here because tcp://'s timeouts are where a clamped value hurt most; the duplicate check is
// BackendUri::parse's, so it holds for every backend.
#include <gtest/gtest.h>

#include "backend/registry.h"
#include "backends/builtin.h"
#include "core/error.h"
#include "support/running_server.h"

namespace tapml::rpc {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(RpcUri, AParameterGivenTwiceIsAnErrorNamingIt) {
  testing::RunningServer s;
  const std::pair<std::string, std::string> cases[] = {
      {"cpu?threads=2&threads=3", "threads"},
      {"cpu?threads=2&threads=2", "threads"},
      {"ref?acc=f32&acc=f64", "acc"},
      {"faulty:cpu?fault=gqa_map&fault=kv_offset", "fault"},
      {s.uri("?token=a&token=b"), "token"},
      {s.uri("?timeout_ms=100&hash_min=0&timeout_ms=200"), "timeout_ms"},
  };
  for (auto& [uri, name] : cases) {
    std::string e = error_of([&] { open_backend(uri); });
    EXPECT_NE(e.find("parameter '" + name + "' given twice"), std::string::npos)
        << uri << ": " << e;
    EXPECT_NE(e.find(uri), std::string::npos) << e;
  }
  EXPECT_NE(error_of([] { BackendUri::parse("x?a=1&b=2&a=1"); }).find("'a' given twice"),
            std::string::npos);
  EXPECT_EQ(BackendUri::parse("x?a=1&b=2").params.size(), 2u);
}

TEST(RpcUri, NumericTcpParametersMustBeNumbersInRange) {
  testing::RunningServer s;
  const std::pair<std::string, std::string> bad[] = {
      {"?timeout_ms=0", "timeout_ms=0"},
      {"?timeout_ms=-5", "timeout_ms=-5"},
      {"?timeout_ms=abc", "timeout_ms=abc"},
      {"?timeout_ms=", "timeout_ms="},
      {"?timeout_ms=1.5", "timeout_ms=1.5"},
      {"?timeout_ms=86400001", "timeout_ms=86400001"},
      {"?call_timeout_ms=0", "call_timeout_ms=0"},
      {"?call_timeout_ms=-1", "call_timeout_ms=-1"},
      {"?call_timeout_ms=2s", "call_timeout_ms=2s"},
      {"?timeout_ms=3000&call_timeout_ms=2000", "call_timeout_ms=2000"},
      {"?hash_min=-1", "hash_min=-1"},
      {"?hash_min=4k", "hash_min=4k"},
  };
  for (auto& [query, named] : bad) {
    std::string e = error_of([&] { open_backend(s.uri(query)); });
    EXPECT_NE(e.find(named + " is"), std::string::npos) << query << ": " << e;
  }
  EXPECT_NO_THROW(open_backend(s.uri("?timeout_ms=1000&call_timeout_ms=1000&hash_min=0")));
  // Without call_timeout_ms, a long timeout_ms also lengthens the wait for runs.
  EXPECT_NO_THROW(open_backend(s.uri("?timeout_ms=200000")));
}

}  // namespace
}  // namespace tapml::rpc

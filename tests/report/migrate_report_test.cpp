#include "report/migrate_report.h"

#include <gtest/gtest.h>

#include <regex>

#include "core/version.h"

namespace tapml {
namespace {

MigrateReport small_report() {
  MigrateReport r;
  r.model = "m.gguf";
  r.target = "cpu";
  r.source = "ref";
  return r;
}

TEST(MigrateReport, ContextRecordsHowTheReportWasMade) {
  ReportContext c;
  c.command = "tapml migrate --model m.gguf --backend cpu";
  c.date = "2025-12-01T14:20:11Z";
  c.version = "0.1";
  c.corpus = "s.corpus";
  c.corpus_backend = "faulty:cpu?fault=rope_pairing";
  c.failing_tests = {5, 41};
  nlohmann::json j = to_json(small_report(), c);
  // Adding an optional object keeps the format readable by every reader of version 1.
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["context"]["command"], c.command);
  EXPECT_EQ(j["context"]["date"], c.date);
  EXPECT_EQ(j["context"]["tapml_version"], "0.1");
  EXPECT_EQ(j["context"]["corpus"]["path"], "s.corpus");
  EXPECT_EQ(j["context"]["corpus"]["backend"], "faulty:cpu?fault=rope_pairing");
  EXPECT_EQ(j["context"]["corpus"]["failing_tests"], nlohmann::json::array({5, 41}));
}

TEST(MigrateReport, ContextIsOptional) {
  EXPECT_FALSE(to_json(small_report()).contains("context"));
  // Without a corpus, no corpus object.
  nlohmann::json j =
      to_json(small_report(), report_context({"tapml", "migrate", "--prompt", "a b"}));
  EXPECT_FALSE(j["context"].contains("corpus"));
  EXPECT_EQ(j["context"]["command"], "tapml migrate --prompt 'a b'");
  EXPECT_EQ(j["context"]["tapml_version"], kTapmlVersion);
  EXPECT_TRUE(std::regex_match(j["context"]["date"].get<std::string>(),
                               std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)")))
      << j["context"].dump();
}

}  // namespace
}  // namespace tapml

#include "report/migrate_html.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "support/shared.h"

namespace tapml {
namespace {

using nlohmann::json;
using testing::run_command;
using testing::shell_quote;
using testing::temp_dir;

json load_sample(const std::string& name) {
  std::string path = std::string(TAPML_SOURCE_DIR) + "/tests/report/" + name;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return json::parse(in);
}

std::string write_file(const std::string& dir, const std::string& name, const std::string& text) {
  std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + needle.size()))
    n++;
  return n;
}

TEST(MigrateHtml, FailingSampleHasEverySectionAndTheCulprit) {
  std::string html = migrate_html(load_sample("sample_migrate_report.json"));
  for (const char* id : {"id=\"timeline-chart\"", "id=\"network-chart\"", "id=\"ops-chart\"",
                         "id=\"verdict\"", "data-status=\"fail\""})
    EXPECT_NE(html.find(id), std::string::npos) << id;
  EXPECT_NE(html.find("blk.2.rope_q"), std::string::npos);
  EXPECT_NE(html.find("class=\"culprit-band\""), std::string::npos);  // on the network chart
  EXPECT_NE(html.find("2.1e5"), std::string::npos);                   // the culprit's ratio
  EXPECT_NE(html.find("head_dim 8"), std::string::npos);              // the unsupported list
  EXPECT_NE(html.find("kinds: rope"), std::string::npos);             // a timeline label
  // The target URI holds '&', which must reach the page escaped.
  EXPECT_NE(html.find("fault=rope_pairing&amp;site="), std::string::npos);
  // Six timeline steps, each a bar with a hover title.
  EXPECT_EQ(count(html, "<g class=\"step "), 6u);
}

TEST(MigrateHtml, IsSelfContained) {
  std::string html = migrate_html(load_sample("sample_migrate_report.json"));
  for (const char* forbidden : {"http:", "https:", "<script", "<link", "<img", "<iframe", "url(",
                                "@import", " src=", "href="})
    EXPECT_EQ(html.find(forbidden), std::string::npos) << forbidden;
  // Every coordinate is a finite number: no NaN or Inf leaked from a log of zero or a null.
  std::regex bad_number(R"(="[^"<>]*\b(nan|inf)\b)", std::regex::icase);
  EXPECT_FALSE(std::regex_search(html, bad_number));
}

TEST(MigrateHtml, PassingSampleShowsTheFullTargetRunAsProof) {
  std::string html = migrate_html(load_sample("sample_migrate_report_pass.json"));
  EXPECT_NE(html.find("data-status=\"pass\""), std::string::npos);
  EXPECT_NE(html.find("The whole model runs on"), std::string::npos);
  // The proof is the run with the most sites on the target: all 83 of stories260K.
  EXPECT_NE(html.find("Proof:"), std::string::npos);
  EXPECT_NE(html.find("83 sites on the target"), std::string::npos);
  EXPECT_NE(html.find("every site is supported"), std::string::npos);
  EXPECT_EQ(html.find("class=\"culprit-band\""), std::string::npos);
}

TEST(MigrateHtml, EscapesEveryStringFromTheReport) {
  json r = load_sample("sample_migrate_report.json");
  const std::string evil = "<script>alert(1)</script>";
  r["model"] = "/tmp/\"quoted\" & <b>bold</b>.gguf";
  r["sites"][0]["site"] = evil;
  r["sites"][1]["op"] = evil;
  r["timeline"][0]["label"] = evil;
  r["unsupported"][0]["reason"] = evil;
  r["verdict"]["culprits"][0]["evidence"] = evil;
  r["verdict"]["summary"] = evil;
  r["prompts"][0] = evil;
  std::string html = migrate_html(r);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<b>bold"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("&quot;quoted&quot; &amp; &lt;b&gt;"), std::string::npos);
}

TEST(MigrateHtml, RejectsOtherFormatsAndVersions) {
  json r = load_sample("sample_migrate_report.json");
  json wrong = r;
  wrong["format"] = "tapml-test-report";
  EXPECT_THROW(migrate_html(wrong), Error);
  json newer = r;
  newer["version"] = 2;
  try {
    migrate_html(newer);
    FAIL() << "version 2 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("version 2"), std::string::npos) << e.what();
  }
  json missing = r;
  missing.erase("version");
  EXPECT_THROW(migrate_html(missing), Error);
  EXPECT_THROW(migrate_html(json::array()), Error);
}

TEST(MigrateHtml, MinimalReportStillRendersEveryChart) {
  std::string html = migrate_html({{"format", "tapml-migrate-report"}, {"version", 1}});
  for (const char* id : {"id=\"timeline-chart\"", "id=\"network-chart\"", "id=\"ops-chart\"",
                         "data-status=\"unknown\""})
    EXPECT_NE(html.find(id), std::string::npos) << id;
  EXPECT_NE(html.find("no migration steps"), std::string::npos);
  std::string empty_arrays = migrate_html({{"format", "tapml-migrate-report"},
                                           {"version", 1},
                                           {"timeline", json::array()},
                                           {"sites", json::array()},
                                           {"unsupported", json::array()},
                                           {"verdict", {{"status", "pass"}}}});
  EXPECT_NE(empty_arrays.find("data-status=\"pass\""), std::string::npos);
}

TEST(MigrateHtml, NullRatiosAreInfiniteAndZerosSitOnTheFloor) {
  json r = {{"format", "tapml-migrate-report"}, {"version", 1}, {"thresholds", {{"nmse", 1e-9}}}};
  r["timeline"] =
      json::array({{{"step", 0}, {"label", "exact"}, {"pass", true}, {"nmse", 0.0}},
                   {{"step", 1}, {"label", "nan"}, {"pass", false}, {"nmse", nullptr}}});
  r["sites"] =
      json::array({{{"site", "a"},
                    {"op", "add"},
                    {"local", {{"ratio", 0.0}, {"check", "pass"}}},
                    {"propagated", {{"error", 0.0}}}},
                   {{"site", "b"},
                    {"op", "attention"},
                    {"layer", 0},
                    {"local", {{"ratio", nullptr}, {"error", nullptr}, {"check", "nan"}}},
                    {"propagated", {{"error", nullptr}, {"ratio", nullptr}}},
                    {"amplification", nullptr}},
                   {{"site", "c"}, {"op", "attention"}, {"layer", 0}}});  // no measurements at all
  std::string html = migrate_html(r);
  // ∞ on the timeline, on both network series and on the ops chart.
  EXPECT_GE(count(html, "∞"), 4u);
  std::regex bad_number(R"(="[^"<>]*\b(nan|inf)\b)", std::regex::icase);
  EXPECT_FALSE(std::regex_search(html, bad_number));
  // The op with an infinite ratio is drawn beyond tolerance.
  EXPECT_NE(html.find("<g class=\"op-row fail\"><title>attention"), std::string::npos);
}

// Headless Chromium: the page opens without script errors, the charts are in the DOM, and a
// screenshot has real content.
std::string find_chromium() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"})
    if (std::filesystem::exists(p)) return p;
  auto found = run_command("command -v chromium || command -v chromium-browser");
  std::string path = found.out.substr(0, found.out.find('\n'));
  return found.exit_code == 0 && !path.empty() ? path : "";
}

std::string chromium_command(const std::string& chromium, const std::string& profile,
                             const std::string& mode, const std::string& html_path) {
  return "timeout 60 " + shell_quote(chromium) +
         " --headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run"
         " --disable-background-networking --disable-component-update --disable-sync"
         " --disable-dev-shm-usage --user-data-dir=" +
         shell_quote(profile) + " " + mode + " " + shell_quote("file://" + html_path);
}

void check_in_chromium(const std::string& sample, const std::string& status) {
  std::string chromium = find_chromium();
  if (chromium.empty())
    GTEST_SKIP() << "chromium is not installed (scripts/install-deps installs it: "
                    "apt-get install chromium)";
  std::string dir = temp_dir();
  std::string html_path = write_file(dir, "report.html", migrate_html(load_sample(sample)));

  auto dom = run_command(chromium_command(chromium, temp_dir(), "--dump-dom", html_path));
  ASSERT_EQ(dom.exit_code, 0) << dom.err;
  EXPECT_EQ(dom.err.find("Uncaught"), std::string::npos) << dom.err;
  for (const std::string id :
       {"id=\"timeline-chart\"", "id=\"network-chart\"", "id=\"ops-chart\"", "id=\"verdict\""})
    EXPECT_NE(dom.out.find(id), std::string::npos) << id << " missing from the DOM";
  EXPECT_NE(dom.out.find("data-status=\"" + status + "\""), std::string::npos);
  // Bars and points were parsed as SVG elements, not dropped.
  EXPECT_GT(count(dom.out, "<rect"), 10u);
  EXPECT_GT(count(dom.out, "<circle"), 50u);

  std::string png = dir + "/report.png";
  auto shot = run_command(chromium_command(chromium, temp_dir(),
                                           "--hide-scrollbars --window-size=1280,2000 "
                                           "--screenshot=" +
                                               shell_quote(png),
                                           html_path));
  ASSERT_EQ(shot.exit_code, 0) << shot.err;
  EXPECT_EQ(shot.err.find("Uncaught"), std::string::npos) << shot.err;
  ASSERT_TRUE(std::filesystem::exists(png)) << shot.err;
  // A blank 1280x2000 page compresses to a few KB; charts, tables and text make it far larger.
  EXPECT_GT(std::filesystem::file_size(png), 60u * 1024);
  std::ifstream in(png, std::ios::binary);
  char magic[8] = {};
  in.read(magic, 8);
  EXPECT_EQ(std::string(magic + 1, 3), "PNG");
}

TEST(MigrateHtml, FailingReportOpensInHeadlessChromium) {
  check_in_chromium("sample_migrate_report.json", "fail");
}

TEST(MigrateHtml, PassingReportOpensInHeadlessChromium) {
  check_in_chromium("sample_migrate_report_pass.json", "pass");
}

}  // namespace
}  // namespace tapml

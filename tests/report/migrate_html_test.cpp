#include "report/migrate_html.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "report/migrate_report.h"
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
  // Seven timeline steps, each a bar with a hover title.
  EXPECT_EQ(count(html, "<g class=\"step "), 7u);
}

TEST(MigrateHtml, IsSelfContained) {
  std::string html = migrate_html(load_sample("sample_migrate_report.json"));
  for (const char* forbidden :
       {"http:", "https:", "<link", "<img", "<iframe", "url(", "@import", " src=", "href="})
    EXPECT_EQ(html.find(forbidden), std::string::npos) << forbidden;
  // One script, inline: the site table's (its CSP hash is checked below).
  EXPECT_EQ(count(html, "<script"), 1u);
  EXPECT_EQ(count(html, "<script>"), 1u);
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
  EXPECT_EQ(count(html, "<script"), 1u);  // the page's own, none from the report
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
  newer["version"] = 3;
  try {
    migrate_html(newer);
    FAIL() << "version 3 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("version 3, this build reads 1-2"), std::string::npos)
        << e.what();
  }
  json missing = r;
  missing.erase("version");
  EXPECT_THROW(migrate_html(missing), Error);
  EXPECT_THROW(migrate_html(json::array()), Error);
}

TEST(MigrateHtml, CulpritsAreShownByCauseAndLatentSitesInTheirOwnSection) {
  json r = load_sample("sample_migrate_report.json");
  json& v = r["verdict"];
  v["culprits"] = json::array({{{"site", "token_embd"}, {"op", "embedding"}, {"group", 0}},
                               {{"site", "blk.0.attn_q"}, {"op", "matmul"}, {"group", 0}},
                               {{"site", "blk.3.ffn_act"}, {"op", "swiglu"}, {"group", 1}}});
  v["groups"] = json::array(
      {{{"label", "f16 weights (embedding, matmul)"}, {"cause", "weight_dtype"}, {"dtype", "f16"}},
       {{"label", "swiglu"}, {"cause", "op"}}});
  v["latent"] = json::array({{{"site", "blk.2.rope_k"},
                              {"op", "rope"},
                              {"evidence", "the output passes with it on the target"},
                              {"group", 0}}});
  v["latent_groups"] = json::array({{{"label", "rope"}, {"cause", "op"}}});
  v["untested"] = json::array({"kinds: add"});
  std::string html = migrate_html(r);
  // One list per cause, in group order, each under its label with its count.
  size_t f16 = html.find("<h4>f16 weights (embedding, matmul) <span class=\"muted\">· 2 sites");
  size_t swiglu = html.find("<h4>swiglu <span class=\"muted\">· 1 site</span>");
  ASSERT_NE(f16, std::string::npos) << html;
  ASSERT_NE(swiglu, std::string::npos);
  EXPECT_LT(f16, html.find("<code>blk.0.attn_q</code>"));
  EXPECT_LT(html.find("<code>blk.0.attn_q</code>"), swiglu);
  EXPECT_LT(swiglu, html.find("<code>blk.3.ffn_act</code>"));
  EXPECT_NE(html.find("Not run end to end"), std::string::npos);
  // The latent section lists the site with its evidence, and the site table marks it.
  size_t latent = html.find("<section class=\"card\" id=\"latent\">");
  ASSERT_NE(latent, std::string::npos);
  EXPECT_NE(html.find("<ul class=\"latent\"><li><code>blk.2.rope_k</code>", latent),
            std::string::npos);
  EXPECT_NE(html.find("the output passes with it on the target", latent), std::string::npos);
  EXPECT_NE(html.find("<code>blk.2.rope_k</code> <span class=\"badge latent\">latent</span>"),
            std::string::npos);
}

TEST(MigrateHtml, APassWithLatentSitesSaysSoAndAPassWithoutSaysNone) {
  json r = load_sample("sample_migrate_report_pass.json");
  std::string clean = migrate_html(r);
  EXPECT_NE(clean.find("No site outside the culprits fails in isolation."), std::string::npos);
  EXPECT_EQ(clean.find("badge latent"), std::string::npos);
  r["verdict"]["latent"] = json::array({{{"site", "blk.0.rope_q"}, {"op", "rope"}, {"group", 0}},
                                        {{"site", "blk.0.rope_k"}, {"op", "rope"}, {"group", 0}}});
  r["verdict"]["latent_groups"] = json::array({{{"label", "rope"}, {"cause", "op"}}});
  std::string html = migrate_html(r);
  EXPECT_NE(html.find("data-status=\"pass\""), std::string::npos);
  EXPECT_NE(html.find("but 2 sites fail in isolation (latent, listed below)"), std::string::npos);
  EXPECT_EQ(html.find("No site outside the culprits"), std::string::npos);
  EXPECT_EQ(count(html, "<span class=\"badge latent\">latent</span>"), 2u);
}

TEST(MigrateHtml, AVersion1ReportStillRendersWithoutALatentSection) {
  json r = load_sample("sample_migrate_report.json");
  r["version"] = 1;
  for (const char* key : {"groups", "latent", "latent_groups", "untested"}) r["verdict"].erase(key);
  for (json& c : r["verdict"]["culprits"]) c.erase("group");
  std::string html = migrate_html(r);
  EXPECT_NE(html.find("<ul class=\"culprits\"><li><code>blk.2.rope_q</code>"), std::string::npos);
  EXPECT_EQ(html.find("id=\"latent\""), std::string::npos);
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

TEST(MigrateHtml, NullRatiosAreInfiniteAndZerosAreExact) {
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
  // The zeros (site a's local and propagated error, step 0's NMSE) are "exact", not tiny.
  EXPECT_EQ(count(html, "class=\"exact\""), 2u);
  EXPECT_NE(html.find(">exact</text>"), std::string::npos);
}

// A report as `tapml migrate` writes it for a stories260K-shaped model (83 sites: the
// embedding, 5 blocks of 16, output_norm, output), with a rope bug at blk.2.rope_q: sites
// outside the blocks have layer -1, copies (embedding, kv_store, add) have exactly zero
// error, and the writer gives no propagated ratio.
MigrateReport llama_like_report() {
  MigrateReport r;
  r.model = "stories260K.gguf";
  r.source = "ref";
  r.target = "faulty:cpu?fault=rope_pairing&site=^blk\\.2\\.rope_q$";
  r.strategy = "auto";
  r.prompt_texts = {"Once upon a time"};
  r.steps = 64;
  r.noise_nmse = 3.4e-12;
  r.nmse_threshold = 3.4e-10;
  auto site = [&](int layer, const std::string& role, Op op, double local, double propagated) {
    SiteAttribution a;
    a.info.site = Site{layer, role};
    a.info.op = op;
    a.compared = true;
    a.local_ratio = local;
    a.local_error = local * 4e-6;
    a.calls = 60;
    a.propagated_error = propagated;
    a.propagated_measured = true;
    r.sites.push_back(a);
  };
  site(-1, "token_embd", Op::Embedding, 0, 0);
  const std::pair<const char*, Op> roles[] = {
      {"attn_norm", Op::RmsNorm}, {"attn_q", Op::Matmul},    {"attn_k", Op::Matmul},
      {"attn_v", Op::Matmul},     {"rope_q", Op::Rope},      {"rope_k", Op::Rope},
      {"kv_store", Op::KvStore},  {"attn", Op::Attention},   {"attn_output", Op::Matmul},
      {"attn_residual", Op::Add}, {"ffn_norm", Op::RmsNorm}, {"ffn_gate", Op::Matmul},
      {"ffn_up", Op::Matmul},     {"ffn_act", Op::Swiglu},   {"ffn_down", Op::Matmul},
      {"ffn_residual", Op::Add}};
  double carried = 1e-7;
  for (int layer = 0; layer < 5; layer++)
    for (auto [role, op] : roles) {
      bool culprit = layer == 2 && std::string(role) == "rope_q";
      bool copy = op == Op::KvStore || op == Op::Add;
      if (culprit) carried = 0.5;
      carried *= 1.05;
      site(layer, role, op, culprit ? 5.3e5 : copy ? 0 : 0.05, carried);
      if (culprit) r.sites.back().local_check = "numeric", r.sites.back().failed = 60;
    }
  site(-1, "output_norm", Op::RmsNorm, 0.07, 0.6);
  site(-1, "output", Op::Matmul, 0.03, 0.53);
  const char* labels[] = {"kinds: embedding", "kinds: rmsnorm", "kinds: matmul", "kinds: rope"};
  const double nmse[] = {0, 6.8e-13, 2.1e-13, 1.72};
  for (int i = 0; i < 4; i++) {
    MigrationStep st;
    st.step = i;
    st.label = labels[i];
    st.target_sites = {"token_embd"};
    st.e2e.nmse = nmse[i];
    st.e2e.positions = 64;
    st.e2e.top1_matching = i == 3 ? 55 : 64;
    st.pass = i != 3;
    r.timeline.push_back(st);
  }
  r.status = "fail";
  r.culprits = {{"blk.2.rope_q", Op::Rope, "isolated: fails 60 of 60 calls"}};
  r.culprit_ops = {Op::Rope};
  r.summary = "rope at blk.2.rope_q breaks the output";
  r.runs = 10;
  return r;
}

// The text of an element: from `open` (e.g. `<svg id="network-chart"`) to its closing tag.
std::string element(const std::string& html, const std::string& open, const std::string& close) {
  size_t a = html.find(open);
  if (a == std::string::npos) return "";
  size_t b = html.find(close, a);
  return html.substr(a, b == std::string::npos ? std::string::npos : b + close.size() - a);
}

TEST(MigrateHtml, ThresholdLabelIsPaintedOverTheBars) {
  std::string chart =
      element(migrate_html(to_json(llama_like_report())), "<svg id=\"timeline-chart\"", "</svg>");
  size_t label = chart.find("threshold-label");
  ASSERT_NE(label, std::string::npos) << chart;
  // SVG paints in document order: a label before a bar is hidden where the bar rises past
  // the threshold (the failing step always does).
  EXPECT_GT(label, chart.rfind("<g class=\"step ")) << chart;
  // And it keeps a halo of the background, so the bar under it does not swallow the text.
  std::regex halo(R"(<text class="[^"]*\bhalo\b[^"]*threshold-label)");
  EXPECT_TRUE(std::regex_search(chart, halo)) << chart;
}

TEST(MigrateHtml, SitesOutsideTheBlocksGoByTheirNames) {
  std::string html = migrate_html(to_json(llama_like_report()));
  // Layer -1 is "outside the blocks", not a block of its own.
  EXPECT_EQ(html.find("blk.-1"), std::string::npos);
  std::string chart = element(html, "<svg id=\"network-chart\"", "</svg>");
  EXPECT_NE(chart.find(">token_embd</text>"), std::string::npos) << chart;
  EXPECT_NE(chart.find("output_norm"), std::string::npos) << chart;
  EXPECT_NE(chart.find("blk.0</text>"), std::string::npos) << chart;
  // In the site table too: no layer "-1".
  std::string table = element(html, "<table class=\"data sites", "</table>");
  EXPECT_EQ(table.find(">-1<"), std::string::npos) << table;
}

// Cells of the site table, row by row, as text without tags.
std::vector<std::vector<std::string>> site_table_cells(const std::string& html) {
  std::string table = element(html, "<table class=\"data sites", "</table>");
  std::string body = element(table, "<tbody>", "</tbody>");
  std::vector<std::vector<std::string>> rows;
  static const std::regex row_re(R"(<tr[^>]*>(.*?)</tr>)"), cell_re(R"(<td[^>]*>(.*?)</td>)"),
      tag_re(R"(<[^>]*>)");
  for (std::sregex_iterator it(body.begin(), body.end(), row_re), end; it != end; ++it) {
    std::string row = (*it)[1];
    rows.emplace_back();
    for (std::sregex_iterator c(row.begin(), row.end(), cell_re); c != end; ++c)
      rows.back().push_back(std::regex_replace(std::string((*c)[1]), tag_re, ""));
  }
  return rows;
}

TEST(MigrateHtml, NoColumnOfTheSiteTableIsAlwaysEmpty) {
  std::string html = migrate_html(to_json(llama_like_report()));
  EXPECT_EQ(html.find("prop. ÷ tol."), std::string::npos);
  auto rows = site_table_cells(html);
  ASSERT_EQ(rows.size(), 83u);
  for (size_t col = 0; col < rows[0].size(); col++) {
    bool filled = false;
    for (const auto& row : rows) filled |= col < row.size() && !row[col].empty() && row[col] != "—";
    EXPECT_TRUE(filled) << "column " << col << " is empty in every row";
  }
}

TEST(MigrateHtml, ZeroErrorIsDrawnAsExactNotAsADipToTheFloor) {
  std::string chart =
      element(migrate_html(to_json(llama_like_report())), "<svg id=\"network-chart\"", "</svg>");
  // 16 sites with zero local error (the embedding, 5 kv_stores, 10 adds) and one
  // with zero propagated error (the embedding): each an "exact" marker, not a point on the
  // log axis's floor with the line dipping down to it.
  EXPECT_EQ(count(chart, "class=\"exact\""), 16u + 1u) << chart;
  EXPECT_NE(chart.find(">exact</text>"), std::string::npos);  // the row is labelled
  std::string local = element(chart, "<g class=\"series local\"", "</g></g>");
  EXPECT_EQ(count(local, "<circle"), 83u - 16u) << local;
}

TEST(MigrateHtml, PropagatedErrorAxisSaysWhatItMeasures) {
  std::string chart =
      element(migrate_html(to_json(llama_like_report())), "<svg id=\"network-chart\"", "</svg>");
  static const std::regex titles(R"(<text class="axis-title"[^>]*>([^<]*)</text>)");
  std::vector<std::string> found;
  for (std::sregex_iterator it(chart.begin(), chart.end(), titles), end; it != end; ++it)
    found.push_back((*it)[1]);
  auto has = [&](const std::string& part) {
    return std::any_of(found.begin(), found.end(),
                       [&](const std::string& t) { return t.find(part) != std::string::npos; });
  };
  // The quantity with its scale, what E is (in the legend), and the horizontal axis.
  EXPECT_TRUE(has("propagated error E (log)")) << chart;
  EXPECT_NE(chart.find("E = max|target − source| ÷ max|source|"), std::string::npos) << chart;
  EXPECT_TRUE(has("local error ÷ tolerance (log)")) << chart;
  EXPECT_TRUE(has("sites in model order")) << chart;
}

// The page's text for `needle` as written, with the five entities esc() writes undone.
std::string unescape(std::string s) {
  for (auto [from, to] : {std::pair<std::string, std::string>{"&lt;", "<"},
                          {"&gt;", ">"},
                          {"&quot;", "\""},
                          {"&#39;", "'"},
                          {"&amp;", "&"}})
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
      s.replace(at, from.size(), to);
  return s;
}

TEST(MigrateHtml, NextStepsGiveTheCommandsToReproduceAndDigIn) {
  json r = to_json(llama_like_report());
  r["context"] = {{"command", "tapml demo --out /tmp/d"},
                  {"date", "2025-12-01T14:20:11Z"},
                  {"tapml_version", "0.1"},
                  {"corpus",
                   {{"path", "/tmp/d/stories.corpus"},
                    {"backend", "faulty:cpu?fault=rope_pairing"},
                    {"failing_tests", {5, 41}}}}};
  std::string html = migrate_html(r);
  std::string box =
      unescape(element(html, "<section class=\"card\" id=\"next-steps\"", "</section>"));
  ASSERT_FALSE(box.empty()) << "no next-steps section";
  // Reproduce the migration; compare the culprit alone; replay each failing carved test.
  EXPECT_NE(box.find("tapml migrate --model stories260K.gguf --backend "
                     "'faulty:cpu?fault=rope_pairing&site=^blk\\.2\\.rope_q$' "
                     "--prompt 'Once upon a time' --steps 64"),
            std::string::npos)
      << box;
  EXPECT_NE(box.find("tapml compare --model stories260K.gguf --backend "
                     "'faulty:cpu?fault=rope_pairing&site=^blk\\.2\\.rope_q$' "
                     "--site '^blk\\.2\\.rope_q$' --prompt 'Once upon a time' --steps 64"),
            std::string::npos)
      << box;
  for (const char* id : {"5", "41"})
    EXPECT_NE(box.find(std::string("tapml test --corpus /tmp/d/stories.corpus --backend "
                                   "'faulty:cpu?fault=rope_pairing' --id ") +
                       id),
              std::string::npos)
        << box;
  // How the report was made.
  for (const char* fact : {"tapml demo --out /tmp/d", "2025-12-01T14:20:11Z", "tapml 0.1"})
    EXPECT_NE(box.find(fact), std::string::npos) << fact << "\n" << box;
}

TEST(MigrateHtml, NextStepsWithoutAContextStillReproduce) {
  json r = to_json(llama_like_report());
  r.erase("context");
  std::string box =
      unescape(element(migrate_html(r), "<section class=\"card\" id=\"next-steps\"", "</section>"));
  EXPECT_NE(box.find("tapml migrate --model stories260K.gguf"), std::string::npos) << box;
  EXPECT_NE(box.find("--site '^blk\\.2\\.rope_q$'"), std::string::npos) << box;
  EXPECT_EQ(box.find("tapml test --corpus"), std::string::npos) << box;
  // The calibrated threshold (100x the noise) is the default; another one was given.
  EXPECT_EQ(box.find("--nmse-threshold"), std::string::npos) << box;
  r["thresholds"]["nmse"] = 1.2345678e-9;
  box =
      unescape(element(migrate_html(r), "<section class=\"card\" id=\"next-steps\"", "</section>"));
  EXPECT_NE(box.find("--steps 64 --nmse-threshold 1.2345678e-09"), std::string::npos) << box;
  // A report made by `tapml migrate` itself is reproduced by its own command line.
  r["context"] = {{"command", "tapml migrate --model m.bin --tokenizer tok.bin --backend cpu"}};
  box =
      unescape(element(migrate_html(r), "<section class=\"card\" id=\"next-steps\"", "</section>"));
  EXPECT_NE(box.find("--tokenizer tok.bin"), std::string::npos) << box;
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

// `html` written to a file and opened by headless Chromium; the DOM after
// the page's scripts ran. The caller skips when there is no chromium.
std::string dump_dom(const std::string& chromium, const std::string& html) {
  std::string path = write_file(temp_dir(), "page.html", html);
  auto dom = run_command(chromium_command(chromium, temp_dir(), "--dump-dom", path));
  EXPECT_EQ(dom.exit_code, 0) << dom.err;
  EXPECT_EQ(dom.err.find("Uncaught"), std::string::npos) << dom.err;
  return dom.out;
}

TEST(MigrateHtml, SiteTableScriptIsInlineAndAllowedByItsHashAlone) {
  std::string html = migrate_html(to_json(llama_like_report()));
  ASSERT_EQ(count(html, "<script"), 1u);
  size_t open = html.find("<script>");
  ASSERT_NE(open, std::string::npos) << "a script with attributes (src?)";
  size_t close = html.find("</script>", open);
  std::string script = html.substr(open + 8, close - open - 8);
  // The browser's hash of the script's text, computed apart from the page's own SHA-256.
  std::string file = write_file(temp_dir(), "script.js", script);
  auto hash = run_command(
      "/usr/bin/python3 -c 'import base64, hashlib, sys; "
      "print(base64.b64encode(hashlib.sha256(open(sys.argv[1], \"rb\").read()).digest())"
      ".decode())' " +
      shell_quote(file));
  ASSERT_EQ(hash.exit_code, 0) << hash.err;
  std::string csp = element(html, "<meta http-equiv=\"Content-Security-Policy\"", ">");
  std::string script_src = csp.substr(csp.find("script-src"));
  script_src = script_src.substr(0, script_src.find_first_of(";\""));
  EXPECT_EQ(script_src, "script-src 'sha256-" + hash.out.substr(0, hash.out.find('\n')) + "'")
      << csp;
}

TEST(MigrateHtml, SiteTableSortsAndFiltersInHeadlessChromium) {
  std::string chromium = find_chromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed";
  std::string html = migrate_html(to_json(llama_like_report()));
  // The page without its CSP, so that a harness after the page's own script may drive the
  // controls as a user would and leave what it saw in the DOM.
  html = std::regex_replace(html, std::regex(R"(<meta http-equiv="Content-Security-Policy"[^>]*>)"),
                            "");
  const std::string harness = R"JS(<script>
(function () {
  var table = document.querySelector('table.sites'), out = {};
  function visible() {
    return Array.prototype.filter.call(table.tBodies[0].rows, function (r) { return !r.hidden; });
  }
  function first() { return visible()[0].cells[0].textContent.trim().split(' ')[0]; }
  var buttons = table.tHead.querySelectorAll('button');
  out.buttons = buttons.length;
  buttons[3].click(); out.worst_first = first();
  buttons[3].click(); out.best_first = first();
  buttons[0].click(); out.site_first = first();
  buttons[0].click(); out.site_reversed_first = first();
  var filter = document.querySelector('.table-controls input[type=search]');
  var failing = document.querySelector('.table-controls input[type=checkbox]');
  filter.value = 'rope'; filter.dispatchEvent(new Event('input'));
  out.rope = visible().length;
  failing.checked = true; failing.dispatchEvent(new Event('change'));
  out.rope_failing = visible().length;
  failing.checked = false; failing.dispatchEvent(new Event('change'));
  filter.value = '^kv_store$'; filter.dispatchEvent(new Event('input'));
  out.kv_store = visible().length;
  filter.value = '(unbalanced'; filter.dispatchEvent(new Event('input'));
  out.bad_regex = visible().length;
  filter.value = ''; filter.dispatchEvent(new Event('input'));
  out.all = visible().length;
  out.count = document.querySelector('.table-controls .count').textContent;
  document.body.setAttribute('data-result', JSON.stringify(out));
})();
</script>)JS";
  html.insert(html.rfind("</body>"), harness);
  std::string dom = dump_dom(chromium, html);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(dom, m, std::regex(R"re(data-result="([^"]*)")re"))) << dom;
  json seen = json::parse(unescape(m[1]));
  EXPECT_EQ(seen["buttons"], 10);  // every column sorts
  // "local ÷ tol.": worst first; again: best first (ties stay in model order).
  EXPECT_EQ(seen["worst_first"], "blk.2.rope_q") << seen.dump();
  EXPECT_EQ(seen["best_first"], "token_embd") << seen.dump();
  // "site": model order, then reversed.
  EXPECT_EQ(seen["site_first"], "token_embd") << seen.dump();
  EXPECT_EQ(seen["site_reversed_first"], "output") << seen.dump();
  // The filter matches site or op (a regular expression, or plain text while it is not one).
  EXPECT_EQ(seen["rope"], 10) << seen.dump();
  EXPECT_EQ(seen["rope_failing"], 1) << seen.dump();
  EXPECT_EQ(seen["kv_store"], 5) << seen.dump();
  EXPECT_EQ(seen["bad_regex"], 0) << seen.dump();
  EXPECT_EQ(seen["all"], 83) << seen.dump();
  EXPECT_EQ(seen["count"], "83 of 83 sites") << seen.dump();
}

TEST(MigrateHtml, SiteTableScriptRunsUnderTheCspAndThePageReadsWithoutIt) {
  std::string chromium = find_chromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed";
  std::string html = migrate_html(to_json(llama_like_report()));
  // As written, CSP included: the page's script ran and added its controls.
  std::string dom = dump_dom(chromium, html);
  EXPECT_NE(dom.find("<table class=\"data sites\" data-interactive"), std::string::npos);
  EXPECT_NE(dom.find("class=\"table-controls\""), std::string::npos);
  // Scripts refused (as a viewer that serves artifacts with a strict CSP does, or a reader
  // with scripts off; Chromium cannot dump the DOM with scripts disabled): every row is there
  // and shown, and no control that would do nothing.
  std::string refused =
      std::regex_replace(html, std::regex("script-src '[^']*'"), "script-src 'none'");
  ASSERT_NE(refused, html);
  std::string still = dump_dom(chromium, refused);
  EXPECT_EQ(still.find("class=\"table-controls\""), std::string::npos);
  EXPECT_EQ(site_table_cells(still).size(), 83u);
  std::string table = element(still, "<table class=\"data sites", "</table>");
  EXPECT_EQ(table.find(" hidden"), std::string::npos);
  EXPECT_NE(still.find("Next steps"), std::string::npos);
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

#include "report/migrate_html.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/json_text.h"
#include "report/command_line.h"
#include "report/csp.h"

namespace tapml {
namespace {

using nlohmann::json;

constexpr const char* kFormat = "tapml-migrate-report";
constexpr int kOldestVersion = 1, kVersion = 2;

// ---- reading the report leniently: a missing or mistyped field is "absent", never an error,
// because the page should still show whatever the rest of the report holds.

const json& member(const json& obj, const char* key) {
  static const json kAbsent;
  if (!obj.is_object()) return kAbsent;
  auto it = obj.find(key);
  return it == obj.end() ? kAbsent : *it;
}

const json& list(const json& obj, const char* key) {
  static const json kEmpty = json::array();
  const json& v = member(obj, key);
  return v.is_array() ? v : kEmpty;
}

bool has(const json& obj, const char* key) { return obj.is_object() && obj.contains(key); }

// A number, +inf for an explicit null (JSON cannot hold Inf or NaN, so the writer stores an
// infinite ratio as null), nullopt when absent or not a number.
std::optional<double> number(const json& obj, const char* key) {
  if (!has(obj, key)) return std::nullopt;
  const json& v = obj.at(key);
  if (v.is_null()) return INFINITY;
  if (v.is_number()) {
    double d = v.get<double>();
    return std::isnan(d) ? INFINITY : d;
  }
  return std::nullopt;
}

std::string text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "";
  return json_text(v);
}

std::string text(const json& obj, const char* key) { return text(member(obj, key)); }

// ---- formatting

std::string esc(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string esc(const json& obj, const char* key) { return esc(text(obj, key)); }

// Short human numbers: three significant digits in the readable range, else "2.5e-7".
std::string fmt(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "∞" : "−∞";
  if (v == 0) return "0";
  char buf[64];
  double a = std::fabs(v);
  if (a >= 1e-3 && a < 1e3) {
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%.2e", v);
  std::string s = buf;
  size_t e = s.find('e');
  std::string mant = s.substr(0, e), exp = s.substr(e + 1);
  while (mant.find('.') != std::string::npos && (mant.back() == '0' || mant.back() == '.'))
    mant.pop_back();
  bool neg = exp[0] == '-';
  size_t first = exp.find_first_not_of("+-0");
  return mant + "e" + (neg ? "-" : "") + (first == std::string::npos ? "0" : exp.substr(first));
}

std::string fmt(std::optional<double> v) { return v ? fmt(*v) : "—"; }

std::string fmt_seconds(double s) {
  if (std::isinf(s) || std::isnan(s)) return fmt(s);
  char buf[64];
  if (s >= 120)
    std::snprintf(buf, sizeof buf, "%d min %d s", int(s / 60), int(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%.3g s", s);
  return buf;
}

// SVG coordinates: one decimal is finer than a pixel.
std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", std::isfinite(v) ? v : 0.0);
  return buf;
}

std::string truncate(const std::string& s, size_t n) {
  if (s.size() <= n) return s;
  size_t cut = n - 1;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) cut--;  // keep UTF-8
  return s.substr(0, cut) + "…";
}

// ---- a log-scale axis mapping values to pixels. Infinite values sit at the top, so a NaN or
// guard failure is the most visible thing on a chart. Exact zeros have no place on a log
// scale: a chart that can show them draws them on a row of their own beyond the floor,
// labelled "exact", rather than as a dip to the floor that reads as "very small".

struct LogAxis {
  int lo = -12, hi = 0;       // decades shown: 10^lo .. 10^hi
  double p_lo = 0, p_hi = 1;  // pixel positions of 10^lo and 10^hi
  bool infinite = false;      // the top decade is reserved for infinite values, labelled "∞"
  bool zeros = false;         // some values are exactly zero
  bool exact_row = false;     // the chart draws zeros on the "exact" row at p_exact
  double p_exact = 0;

  double pos(double v) const {
    if (!(v > 0)) return exact_row ? p_exact : p_lo;
    if (std::isinf(v)) return p_hi;
    double t = (std::log10(v) - lo) / double(hi - lo);
    t = std::clamp(t, 0.0, 1.0);
    return p_lo + t * (p_hi - p_lo);
  }
  int tick_step() const { return std::max(1, (hi - lo + 7) / 8); }
  // Decades to label: up from the floor (where zeros sit), or down from the top when that is
  // the "∞" row, so the row that matters most always has its label.
  std::vector<int> ticks() const {
    std::vector<int> out;
    if (infinite)
      for (int e = hi; e >= lo; e -= tick_step()) out.push_back(e);
    else
      for (int e = lo; e <= hi; e += tick_step()) out.push_back(e);
    return out;
  }
  std::string label(int e) const;
};

std::string decade_label(int e) {
  switch (e) {
    case -2:
      return "0.01";
    case -1:
      return "0.1";
    case 0:
      return "1";
    case 1:
      return "10";
    case 2:
      return "100";
    default:
      return "1e" + std::to_string(e);
  }
}

std::string LogAxis::label(int e) const { return infinite && e == hi ? "∞" : decade_label(e); }

LogAxis fit_axis(const std::vector<double>& values, const std::vector<double>& references) {
  double mn = INFINITY, mx = 0;
  bool zero = false, inf = false;
  auto see = [&](double v) {
    if (std::isinf(v))
      inf = true;
    else if (!(v > 0))
      zero = true;
    else
      mn = std::min(mn, v), mx = std::max(mx, v);
  };
  for (double v : values) see(v);
  for (double v : references) see(v);
  LogAxis a;
  if (mx > 0) {
    a.lo = int(std::floor(std::log10(mn)));
    a.hi = int(std::ceil(std::log10(mx)));
    if (a.hi == a.lo) a.hi++;
  }
  a.zeros = zero;
  if (inf) a.hi++, a.infinite = true;  // a decade above the largest finite value for "∞"
  if (a.hi - a.lo < 2) a.lo = a.hi - 2;
  a.lo = std::max(a.lo, a.hi - 24);  // beyond 24 decades nothing is readable; clamp the floor
  return a;
}

// Horizontal grid lines and decade labels for a vertical log axis over [x0, x1].
std::string y_grid(const LogAxis& a, double x0, double x1) {
  std::string s;
  for (int e : a.ticks()) {
    double y = a.pos(std::pow(10.0, e));
    s += "<line class=\"grid\" x1=\"" + px(x0) + "\" x2=\"" + px(x1) + "\" y1=\"" + px(y) +
         "\" y2=\"" + px(y) + "\"/>";
    s += "<text class=\"tick\" x=\"" + px(x0 - 6) + "\" y=\"" + px(y + 4) +
         "\" text-anchor=\"end\">" + a.label(e) + "</text>";
  }
  if (a.exact_row && a.zeros)
    s += "<line class=\"grid exact-grid\" x1=\"" + px(x0) + "\" x2=\"" + px(x1) + "\" y1=\"" +
         px(a.p_exact) + "\" y2=\"" + px(a.p_exact) + "\"/><text class=\"tick exact-tick\" x=\"" +
         px(x0 - 6) + "\" y=\"" + px(a.p_exact + 4) + "\" text-anchor=\"end\">exact</text>";
  return s;
}

// A reference line across a chart, labelled above its left end. Charts draw these after
// their data, and the label has a halo of the background, so no bar or point can hide it.
std::string hline(double x0, double x1, double y, const std::string& cls,
                  const std::string& label) {
  std::string s = "<line class=\"" + cls + "\" x1=\"" + px(x0) + "\" x2=\"" + px(x1) + "\" y1=\"" +
                  px(y) + "\" y2=\"" + px(y) + "\"/>";
  if (!label.empty())
    s += "<text class=\"ref-label halo " + cls + "-label\" x=\"" + px(x0 + 4) + "\" y=\"" +
         px(y - 4) + "\">" + esc(label) + "</text>";
  return s;
}

std::string svg_open(const char* id, double w, double h, const std::string& label) {
  return "<svg id=\"" + std::string(id) + "\" class=\"chart\" viewBox=\"0 0 " + px(w) + " " +
         px(h) + "\" role=\"img\" aria-label=\"" + esc(label) + "\">";
}

// ---- what the page needs from the report, gathered once

struct Culprits {
  std::set<std::string> sites, ops;
  std::set<std::string> latent;  // sites failing in isolation that are not culprits
};

Culprits culprits_of(const json& report) {
  Culprits c;
  const json& verdict = member(report, "verdict");
  for (const json& e : list(verdict, "culprits")) {
    if (e.is_string()) {
      c.sites.insert(e.get<std::string>());
    } else {
      if (has(e, "site")) c.sites.insert(text(e, "site"));
      if (has(e, "op")) c.ops.insert(text(e, "op"));
    }
  }
  for (const json& op : list(verdict, "culprit_ops")) c.ops.insert(text(op));
  for (const json& s : list(member(report, "bisect"), "culprits")) c.sites.insert(text(s));
  for (const json& e : list(verdict, "latent"))
    if (has(e, "site")) c.latent.insert(text(e, "site"));
  return c;
}

std::string status_of(const json& report) {
  std::string s = text(member(report, "verdict"), "status");
  return s == "pass" || s == "fail" ? s : "unknown";
}

// A local check that is anything but "pass" (fail, nan, inf, guard, error) is a failure.
bool local_failed(const json& site) {
  const json& local = member(site, "local");
  std::string check = text(local, "check");
  if (!check.empty()) return check != "pass";
  auto r = number(local, "ratio");
  return r && *r > 1;
}

// The block a site belongs to; nullopt for sites outside the blocks (the embedding,
// output_norm, output), which the writer gives layer -1, and for reports without layers.
std::optional<int64_t> block_of(const json& site) {
  const json& layer = member(site, "layer");
  if (!layer.is_number_integer() || layer.get<int64_t>() < 0) return std::nullopt;
  return layer.get<int64_t>();
}

// ---- sections

std::string header_section(const json& r) {
  std::string s = "<header><h1>TapML migration report</h1>";
  if (has(r, "model")) s += "<div class=\"model\">" + esc(r, "model") + "</div>";
  s += "<dl class=\"meta\">";
  auto item = [&](const std::string& k, const std::string& v_html) {
    s += "<div" + std::string(k == "source → target" ? " class=\"wide\"" : "") + "><dt>" + k +
         "</dt><dd>" + v_html + "</dd></div>";
  };
  if (has(r, "source") || has(r, "target"))
    item("source → target",
         "<code>" + esc(r, "source") + "</code> → <code>" + esc(r, "target") + "</code>");
  if (has(r, "strategy")) item("strategy", esc(r, "strategy"));
  if (!list(r, "prompts").empty()) {
    std::string p;
    for (const json& prompt : list(r, "prompts"))
      p += (p.empty() ? "" : "<br>") + std::string("“") + esc(text(prompt)) + "”";
    item("prompts", p);
  }
  if (has(r, "steps")) item("steps", esc(r, "steps"));
  if (has(r, "kv_cache") && text(r, "kv_cache") != "f32") item("KV cache", esc(r, "kv_cache"));
  if (has(r, "runs")) item("model runs", esc(r, "runs"));
  if (auto t = number(r, "seconds")) item("time", esc(fmt_seconds(*t)));
  const json& th = member(r, "thresholds");
  if (has(th, "nmse") || has(th, "noise_nmse")) {
    std::string v;
    if (auto n = number(th, "nmse")) v += "NMSE ≤ " + esc(fmt(*n));
    if (auto n = number(th, "noise_nmse"))
      v += (v.empty() ? "" : "; ") + std::string("noise ") + esc(fmt(*n));
    item("end-to-end threshold", v);
  }
  s += "</dl></header>";
  return s;
}

// The timeline entry that proves a passing migration: the one with the most sites on the
// target (the last such, which is the full-target run when the strategy ends with one).
const json* full_target_run(const json& r) {
  const json* best = nullptr;
  double most = -1;
  for (const json& step : list(r, "timeline")) {
    double n = number(step, "n_target_sites").value_or(double(list(step, "target_sites").size()));
    if (n >= most) most = n, best = &step;
  }
  return best;
}

std::string run_description(const json& step) {
  std::string s;
  if (has(step, "step")) s += "step " + esc(step, "step");
  if (has(step, "label")) s += s.empty() ? esc(step, "label") : " (" + esc(step, "label") + ")";
  std::vector<std::string> facts;
  if (auto n = number(step, "n_target_sites")) facts.push_back(fmt(*n) + " sites on the target");
  if (auto n = number(step, "nmse")) facts.push_back("logits NMSE " + fmt(*n));
  if (auto n = number(step, "kl")) facts.push_back("KL " + fmt(*n));
  if (auto n = number(step, "top1")) facts.push_back("top-1 agreement " + fmt(*n));
  if (has(step, "tokens_matching") && has(step, "tokens_total"))
    facts.push_back("greedy tokens " + text(step, "tokens_matching") + "/" +
                    text(step, "tokens_total") + " identical");
  for (size_t i = 0; i < facts.size(); i++) s += (i == 0 ? ": " : ", ") + esc(facts[i]);
  return s;
}

// Named sites ({site, op, evidence, group}) as lists: one per cause group when the report
// groups them, else one list. `cls` is the class of each list.
std::string named_lists(const json& named, const json& groups, const std::string& cls) {
  auto item = [](const json& c) {
    if (c.is_string()) return "<li><code>" + esc(text(c)) + "</code></li>";
    std::string s = "<li><code>" + esc(c, "site") + "</code>";
    if (has(c, "op")) s += " <span class=\"op-tag\">" + esc(c, "op") + "</span>";
    if (has(c, "evidence")) s += "<div class=\"evidence\">" + esc(c, "evidence") + "</div>";
    return s + "</li>";
  };
  auto group_of = [&](const json& c) {
    const json& g = member(c, "group");
    return g.is_number_integer() && g.get<int64_t>() >= 0 &&
                   size_t(g.get<int64_t>()) < groups.size()
               ? g.get<int64_t>()
               : int64_t(-1);
  };
  std::string s;
  for (size_t g = 0; g < groups.size(); g++) {
    std::string items;
    size_t n = 0;
    for (const json& c : named)
      if (group_of(c) == int64_t(g)) items += item(c), n++;
    s += "<div class=\"cause\" data-cause=\"" + esc(groups[g], "cause") + "\"><h4>" +
         esc(groups[g], "label") + " <span class=\"muted\">· " + std::to_string(n) + " site" +
         (n == 1 ? "" : "s") + "</span></h4><ul class=\"" + cls + "\">" + items + "</ul></div>";
  }
  std::string ungrouped;
  for (const json& c : named)
    if (group_of(c) < 0) ungrouped += item(c);
  if (!ungrouped.empty()) s += "<ul class=\"" + cls + "\">" + ungrouped + "</ul>";
  return s;
}

std::string verdict_section(const json& r, const Culprits& culprits) {
  const json& v = member(r, "verdict");
  std::string status = status_of(r);
  std::string s =
      "<section id=\"verdict\" class=\"verdict " + status + "\" data-status=\"" + status + "\">";
  const char* badge = status == "pass" ? "PASS" : status == "fail" ? "FAIL" : "NO VERDICT";
  s += "<div class=\"status\">" + std::string(badge) + "</div><div class=\"verdict-body\">";
  const size_t latent = list(v, "latent").size();
  if (status == "pass" && latent > 0) {
    s += "<p class=\"headline\">The whole model runs on <code>" + esc(r, "target") +
         "</code> and matches <code>" + esc(r, "source") + "</code>, but " +
         std::to_string(latent) + (latent == 1 ? " site fails" : " sites fail") +
         " in isolation (latent, listed below).</p>";
  } else if (status == "pass") {
    s += "<p class=\"headline\">The whole model runs on <code>" + esc(r, "target") +
         "</code> and matches <code>" + esc(r, "source") + "</code>.</p>";
  } else if (status == "fail") {
    s += "<p class=\"headline\">The model breaks on <code>" + esc(r, "target") + "</code>.</p>";
  } else {
    s += "<p class=\"headline\">This report carries no verdict.</p>";
  }
  if (has(v, "summary")) s += "<p class=\"summary\">" + esc(v, "summary") + "</p>";

  if (status == "pass") {
    if (const json* proof = full_target_run(r))
      s += "<p class=\"proof\"><strong>Proof:</strong> " + run_description(*proof) + ".</p>";
  }
  const json& listed = list(v, "culprits");
  if (!listed.empty()) {
    s += "<h3>Culprits</h3>" + named_lists(listed, list(v, "groups"), "culprits");
  } else if (status == "fail" && !culprits.sites.empty()) {
    s += "<h3>Culprits</h3><ul class=\"culprits\">";
    for (const std::string& site : culprits.sites) s += "<li><code>" + esc(site) + "</code></li>";
    s += "</ul>";
  }
  if (!culprits.ops.empty()) {
    s += "<p>Culprit ops: ";
    bool first = true;
    for (const std::string& op : culprits.ops)
      s += (first ? "" : ", ") + std::string("<span class=\"op-tag\">") + esc(op) + "</span>",
          first = false;
    s += "</p>";
  }
  const json& untested = list(v, "untested");
  if (!untested.empty()) {
    std::string names;
    for (const json& u : untested) names += (names.empty() ? "" : ", ") + esc(text(u));
    s += "<p class=\"untested\">Not run end to end (the strategy stops at its first failing "
         "step; <code>--strategy auto</code> goes on): " +
         names + ".</p>";
  }
  const json& b = member(r, "bisect");
  if (number(b, "runs").value_or(0) > 0)
    s += "<p class=\"muted\">Bisection: " + esc(b, "runs") + " runs over " + esc(b, "candidates") +
         " candidate sites.</p>";
  s += "</div></section>";
  return s;
}

// Sites that fail in isolation but are not culprits, by cause; only for reports that list
// them (version 2), where an empty list is itself a finding.
std::string latent_section(const json& r) {
  const json& v = member(r, "verdict");
  if (!has(v, "latent")) return "";
  const json& latent = list(v, "latent");
  std::string body = latent.empty()
                         ? "<p class=\"none\">No site outside the culprits fails in isolation.</p>"
                         : named_lists(latent, list(v, "latent_groups"), "latent");
  return "<section class=\"card\" id=\"latent\"><h2>Latent</h2><p class=\"what\">Sites "
         "that fail in isolation (fed the source's inputs) but are not culprits: the output "
         "stayed within the threshold with them on the target, or, where a strategy stopped "
         "early, they were not run (each says which). Another model or prompt may meet "
         "them.</p>" +
         body + "</section>";
}

std::string timeline_chart(const json& r) {
  const json& steps = list(r, "timeline");
  const json& th = member(r, "thresholds");
  auto threshold = number(th, "nmse");
  auto noise = number(th, "noise_nmse");
  const double W = 1000, L = 70, R = 24, T = 34, PH = 240, B = 120, H = T + PH + B;
  std::vector<double> values, refs;
  for (const json& st : steps)
    if (auto n = number(st, "nmse")) values.push_back(*n);
  if (threshold) refs.push_back(*threshold);
  if (noise) refs.push_back(*noise);
  LogAxis a = fit_axis(values, refs);
  a.p_lo = T + PH, a.p_hi = T;

  std::string s = svg_open("timeline-chart", W, H, "logits NMSE against the source per step");
  s += "<text class=\"axis-title\" transform=\"translate(16 " + px(T + PH / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">logits NMSE (log)</text>";
  s += y_grid(a, L, W - R);
  size_t n = steps.size();
  if (n == 0) {
    s += "<text class=\"empty\" x=\"" + px(W / 2) + "\" y=\"" + px(T + PH / 2) +
         "\" text-anchor=\"middle\">no migration steps in this report</text>";
  }
  double band = (W - L - R) / double(std::max<size_t>(n, 1));
  double bar = std::min(band * 0.62, 56.0);
  size_t label_every = std::max<size_t>(1, (n + 39) / 40);
  for (size_t i = 0; i < n; i++) {
    const json& st = steps[i];
    double cx = L + (i + 0.5) * band;
    auto nmse = number(st, "nmse");
    bool pass = member(st, "pass").is_boolean() ? member(st, "pass").get<bool>()
                                                : (nmse && threshold && *nmse <= *threshold);
    std::string tip = "step " + text(st, "step") + " · " + text(st, "label");
    if (auto k = number(st, "n_target_sites")) tip += "\nsites on the target: " + fmt(*k);
    tip += std::string("\n") + (pass ? "pass" : "FAIL") + " · NMSE " + fmt(nmse);
    if (auto k = number(st, "kl")) tip += " · KL " + fmt(*k);
    if (auto k = number(st, "top1")) tip += "\ntop-1 agreement " + fmt(*k);
    if (has(st, "tokens_matching"))
      tip += " · tokens " + text(st, "tokens_matching") + "/" + text(st, "tokens_total");
    if (auto k = number(st, "seconds")) tip += "\n" + fmt_seconds(*k);
    s += "<g class=\"step " + std::string(pass ? "pass" : "fail") + "\"><title>" + esc(tip) +
         "</title>";
    if (nmse && *nmse == 0) {
      // Identical logits: no bar to draw, and none that would read as "small".
      s += "<text class=\"bar-value exact-value\" x=\"" + px(cx) + "\" y=\"" + px(a.p_lo - 5) +
           "\" text-anchor=\"middle\">exact</text>";
    } else if (nmse) {
      double top = a.pos(*nmse), base = a.p_lo;
      s += "<rect x=\"" + px(cx - bar / 2) + "\" y=\"" + px(top) + "\" width=\"" + px(bar) +
           "\" height=\"" + px(std::max(base - top, 1.5)) + "\" rx=\"2\"/>";
      std::string mark = std::isinf(*nmse) ? "∞" : fmt(*nmse);
      s += "<text class=\"bar-value\" x=\"" + px(cx) + "\" y=\"" + px(top - 5) +
           "\" text-anchor=\"middle\">" + esc(mark) + "</text>";
    } else {
      s += "<text class=\"bar-value\" x=\"" + px(cx) + "\" y=\"" + px(a.p_lo - 5) +
           "\" text-anchor=\"middle\">n/a</text>";
    }
    if (i % label_every == 0) {
      std::string label = text(st, "label");
      if (label.empty()) label = "step " + text(st, "step");
      s += "<text class=\"xlabel\" transform=\"translate(" + px(cx + 4) + " " + px(T + PH + 14) +
           ") rotate(-35)\" text-anchor=\"end\">" + esc(truncate(label, 30)) + "</text>";
    }
    s += "</g>";
  }
  s += "<line class=\"axis\" x1=\"" + px(L) + "\" x2=\"" + px(W - R) + "\" y1=\"" + px(a.p_lo) +
       "\" y2=\"" + px(a.p_lo) + "\"/>";
  if (threshold && std::isfinite(*threshold) && *threshold > 0)
    s += hline(L, W - R, a.pos(*threshold), "threshold", "threshold " + fmt(*threshold));
  if (noise && std::isfinite(*noise) && *noise > 0)
    s += hline(L, W - R, a.pos(*noise), "noise", "noise floor " + fmt(*noise));
  // Legend
  s += "<g class=\"legend\" transform=\"translate(" + px(L) +
       " 14)\">"
       "<rect class=\"swatch pass\" width=\"10\" height=\"10\" y=\"-9\"/>"
       "<text x=\"15\">step passes</text>"
       "<rect class=\"swatch fail\" x=\"105\" width=\"10\" height=\"10\" y=\"-9\"/>"
       "<text x=\"120\">step fails</text></g>";
  s += "</svg>";
  return s;
}

std::string timeline_table(const json& r) {
  const json& steps = list(r, "timeline");
  if (steps.empty()) return "";
  std::string s =
      "<table class=\"data\"><thead><tr><th>step</th><th>moved to the target</th>"
      "<th class=\"num\">sites on target</th><th>result</th><th class=\"num\">NMSE</th>"
      "<th class=\"num\">KL</th><th class=\"num\">top-1</th><th class=\"num\">tokens"
      "</th><th class=\"num\">time</th></tr></thead><tbody>";
  for (const json& st : steps) {
    bool pass = member(st, "pass").is_boolean() && member(st, "pass").get<bool>();
    bool known = member(st, "pass").is_boolean();
    s += "<tr" + std::string(known && !pass ? " class=\"bad\"" : "") + "><td class=\"num\">" +
         esc(st, "step") + "</td><td>" + esc(st, "label");
    const json& sites = list(st, "target_sites");
    if (!sites.empty()) {
      std::string names;
      for (const json& site : sites) names += (names.empty() ? "" : ", ") + esc(text(site));
      s += "<details><summary>" + std::to_string(sites.size()) + " site" +
           (sites.size() == 1 ? "" : "s") + "</summary><code>" + names + "</code></details>";
    }
    s += "</td><td class=\"num\">" + fmt(number(st, "n_target_sites")) + "</td><td>" +
         (known ? (pass ? "<span class=\"badge pass\">pass</span>"
                        : "<span class=\"badge fail\">fail</span>")
                : "—") +
         "</td><td class=\"num\">" + esc(fmt(number(st, "nmse"))) + "</td><td class=\"num\">" +
         esc(fmt(number(st, "kl"))) + "</td><td class=\"num\">" + esc(fmt(number(st, "top1"))) +
         "</td><td class=\"num\">" +
         (has(st, "tokens_matching") ? esc(st, "tokens_matching") + "/" + esc(st, "tokens_total")
                                     : "—") +
         "</td><td class=\"num\">" +
         (number(st, "seconds") ? esc(fmt_seconds(*number(st, "seconds"))) : "—") + "</td></tr>";
  }
  s += "</tbody></table>";
  return s;
}

// Draws one series as line segments and points. The line breaks where a value is missing
// or exactly zero; a zero is a hollow diamond on the axis's "exact" row.
std::string series(const std::vector<double>& xs, const std::vector<std::optional<double>>& ys,
                   const LogAxis& a, const std::string& cls, const std::vector<std::string>& tips,
                   const std::vector<bool>& bad) {
  std::string s = "<g class=\"series " + cls + "\">";
  std::string path;
  bool open = false;
  for (size_t i = 0; i < xs.size(); i++) {
    if (!ys[i] || *ys[i] == 0) {
      open = false;
      continue;
    }
    path += (open ? " L" : " M") + px(xs[i]) + " " + px(a.pos(*ys[i]));
    open = true;
  }
  if (!path.empty()) s += "<path class=\"line\" d=\"" + path.substr(1) + "\"/>";
  for (size_t i = 0; i < xs.size(); i++) {
    if (!ys[i]) continue;
    double y = a.pos(*ys[i]);
    if (*ys[i] == 0) {
      s += "<g><title>" + esc(tips[i]) + "</title><path class=\"exact\" d=\"M" + px(xs[i]) + " " +
           px(y - 4) + " L" + px(xs[i] + 4) + " " + px(y) + " L" + px(xs[i]) + " " + px(y + 4) +
           " L" + px(xs[i] - 4) + " " + px(y) + " Z\"/></g>";
      continue;
    }
    s += "<g" + std::string(bad[i] ? " class=\"bad\"" : "") + "><title>" + esc(tips[i]) +
         "</title><circle cx=\"" + px(xs[i]) + "\" cy=\"" + px(y) + "\" r=\"3.2\"/>";
    if (std::isinf(*ys[i]))
      s += "<text class=\"infinite\" x=\"" + px(xs[i]) + "\" y=\"" + px(y - 6) +
           "\" text-anchor=\"middle\">∞</text>";
    s += "</g>";
  }
  return s + "</g>";
}

std::string network_chart(const json& r, const Culprits& culprits) {
  const json& sites = list(r, "sites");
  size_t n = sites.size();
  // Each panel has its "exact" row EX below its floor.
  const double W = 1000, L = 78, R = 24, T = 74, PH = 170, EX = 18, GAP = 48, B = 130;
  const double T2 = T + PH + EX + GAP, H = T2 + PH + EX + B;
  double band = (W - L - R) / double(std::max<size_t>(n, 1));
  std::vector<double> xs;
  std::vector<std::optional<double>> local, prop;
  std::vector<std::string> tips;
  std::vector<bool> bad, prop_bad;
  for (size_t i = 0; i < n; i++) {
    const json& site = sites[i];
    const json& lo = member(site, "local");
    const json& pr = member(site, "propagated");
    xs.push_back(L + (i + 0.5) * band);
    local.push_back(number(lo, "ratio"));
    prop.push_back(number(pr, "error"));
    bool culprit = culprits.sites.count(text(site, "site")) > 0;
    bad.push_back(local_failed(site) || culprit);
    auto pr_ratio = number(pr, "ratio");
    // Propagated error beyond one op's tolerance is normal (it accumulates); only the
    // culprit is marked on that series.
    prop_bad.push_back(culprit);
    std::string tip = text(site, "site") + " (" + text(site, "op");
    if (auto layer = block_of(site)) tip += ", layer " + std::to_string(*layer);
    tip += ")";
    if (culprit) tip += " — CULPRIT";
    if (has(site, "local")) {
      tip += "\nlocal: " + fmt(number(lo, "ratio")) + " × tolerance";
      if (has(lo, "check")) tip += " (" + text(lo, "check") + ")";
      if (auto e = number(lo, "error")) tip += ", error " + fmt(*e);
      if (has(lo, "calls")) tip += ", " + text(lo, "calls") + " calls";
      if (auto f = number(lo, "failed"); f && *f > 0) tip += ", " + fmt(*f) + " failed";
    } else {
      tip += "\nlocal: not checked";
    }
    if (has(site, "propagated")) {
      tip += "\npropagated: error " + fmt(number(pr, "error"));
      if (pr_ratio) tip += ", " + fmt(*pr_ratio) + " × tolerance";
    }
    if (auto amp = number(site, "amplification")) tip += "\namplification " + fmt(*amp) + "×";
    tips.push_back(tip);
  }
  auto values = [](const std::vector<std::optional<double>>& v) {
    std::vector<double> out;
    for (auto& x : v)
      if (x) out.push_back(*x);
    return out;
  };
  LogAxis a1 = fit_axis(values(local), {1.0});
  a1.p_lo = T + PH, a1.p_hi = T, a1.exact_row = true, a1.p_exact = T + PH + EX;
  LogAxis a2 = fit_axis(values(prop), {});
  a2.p_lo = T2 + PH, a2.p_hi = T2, a2.exact_row = true, a2.p_exact = T2 + PH + EX;

  std::string s = svg_open("network-chart", W, H, "error along the network per site");
  // Legend
  s += "<g class=\"legend\" transform=\"translate(" + px(L) +
       " 16)\">"
       "<circle class=\"swatch-local\" cx=\"5\" cy=\"-4\" r=\"4\"/>"
       "<text x=\"15\">local error ÷ tolerance: the op alone, fed the source's inputs</text>"
       "<rect class=\"swatch-culprit\" x=\"560\" y=\"-10\" width=\"12\" height=\"12\"/>"
       "<text x=\"578\">culprit</text>"
       "<circle class=\"swatch-prop\" cx=\"5\" cy=\"14\" r=\"4\"/>"
       "<text x=\"15\" y=\"18\">propagated error E = max|target − source| ÷ max|source| of the "
       "site's outputs, with every site up to it on the target</text>"
       "<path class=\"swatch-exact\" d=\"M5 32 L9 36 L5 40 L1 36 Z\"/>"
       "<text x=\"15\" y=\"40\">exact: zero error (no place on a log scale)</text>"
       "<text x=\"300\" y=\"40\" class=\"infinite\">∞</text>"
       "<text x=\"314\" y=\"40\">NaN, Inf or an out-of-bounds write</text></g>";
  // Culprit bands first, so the data draws over them.
  for (size_t i = 0; i < n; i++) {
    std::string name = text(sites[i], "site");
    if (!culprits.sites.count(name)) continue;
    double w = std::max(band, 8.0);
    s += "<rect class=\"culprit-band\" x=\"" + px(xs[i] - w / 2) + "\" y=\"" + px(T) +
         "\" width=\"" + px(w) + "\" height=\"" + px(T2 + PH + EX - T) + "\"/>";
    const char* anchor = xs[i] < L + 120 ? "start" : xs[i] > W - R - 120 ? "end" : "middle";
    s += "<text class=\"culprit-label\" x=\"" + px(xs[i]) + "\" y=\"" + px(T2 - 8) +
         "\" text-anchor=\"" + anchor + "\">" + esc(name) + "</text>";
  }
  // Layer boundaries: faint lines; they make "where in the network" readable at a glance.
  std::vector<std::pair<size_t, size_t>> spans;  // [first, last] site index of each layer run
  std::vector<std::string> span_names;
  for (size_t i = 0; i < n; i++) {
    auto block = block_of(sites[i]);
    if (!block) continue;
    std::string layer = std::to_string(*block);
    if (!spans.empty() && span_names.back() == layer && spans.back().second == i - 1) {
      spans.back().second = i;
    } else {
      spans.push_back({i, i});
      span_names.push_back(layer);
    }
  }
  for (auto& [first, last] : spans) {
    double x = L + first * band;
    s += "<line class=\"layer-sep\" x1=\"" + px(x) + "\" x2=\"" + px(x) + "\" y1=\"" + px(T) +
         "\" y2=\"" + px(T2 + PH + EX) + "\"/>";
  }
  s += "<text class=\"axis-title\" transform=\"translate(14 " + px(T + PH / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">local error ÷ tolerance (log)</text>";
  s += "<text class=\"axis-title\" transform=\"translate(14 " + px(T2 + PH / 2) +
       ") rotate(-90)\" text-anchor=\"middle\">propagated error E (log)</text>";
  s += y_grid(a1, L, W - R) + y_grid(a2, L, W - R);
  for (double y : {a1.p_lo, a2.p_lo})
    s += "<line class=\"axis\" x1=\"" + px(L) + "\" x2=\"" + px(W - R) + "\" y1=\"" + px(y) +
         "\" y2=\"" + px(y) + "\"/>";
  if (n == 0) {
    s += "<text class=\"empty\" x=\"" + px(W / 2) + "\" y=\"" + px(T + PH / 2) +
         "\" text-anchor=\"middle\">no per-site measurements in this report</text>";
  }
  s += series(xs, local, a1, "local", tips, bad);
  s += series(xs, prop, a2, "prop", tips, prop_bad);
  s += hline(L, W - R, a1.pos(1.0), "threshold", "tolerance (1.0)");

  // x labels: every site when there is room, else one label per layer plus the sites outside
  // the blocks (embedding, output), which are few.
  double ly = T2 + PH + EX + 16;
  s += "<text class=\"axis-title\" x=\"" + px((L + W - R) / 2) + "\" y=\"" + px(H - 8) +
       "\" text-anchor=\"middle\">sites in model order</text>";
  auto rotated = [&](double x, const std::string& label, const std::string& cls) {
    return "<text class=\"xlabel " + cls + "\" transform=\"translate(" + px(x + 3) + " " + px(ly) +
           ") rotate(-45)\" text-anchor=\"end\">" + esc(truncate(label, 22)) + "</text>";
  };
  if (band >= 12) {
    for (size_t i = 0; i < n; i++) {
      std::string name = text(sites[i], "site");
      s += rotated(xs[i], name, culprits.sites.count(name) ? "culprit-x" : "");
    }
  } else {
    double min_gap = 34;
    double last_x = -1e9;
    for (size_t k = 0; k < spans.size(); k++) {
      double x0 = L + spans[k].first * band, x1 = L + (spans[k].second + 1) * band;
      double cx = (x0 + x1) / 2;
      if (cx - last_x < min_gap) continue;
      last_x = cx;
      s += "<text class=\"xlabel\" x=\"" + px(cx) + "\" y=\"" + px(ly + 2) +
           "\" text-anchor=\"middle\">blk." + esc(span_names[k]) + "</text>";
    }
    // Adjacent sites outside layers (output_norm, output) share one label so they don't overlap.
    auto in_layer = [&](size_t i) { return block_of(sites[i]).has_value(); };
    for (size_t i = 0; i < n; i++) {
      if (in_layer(i)) continue;
      size_t j = i;
      while (j + 1 < n && !in_layer(j + 1)) j++;
      std::string label = text(sites[i], "site");
      if (j > i) label += " … " + text(sites[j], "site");
      s += rotated((xs[i] + xs[j]) / 2, label, "");
      i = j;
    }
  }
  s += "</svg>";
  return s;
}

struct OpRow {
  std::string op;
  std::optional<double> worst;  // worst local ratio over the op's sites; +inf for null
  int sites = 0, failed = 0, unsupported = 0;
};

std::vector<OpRow> op_rows(const json& r) {
  std::vector<OpRow> rows;
  std::map<std::string, size_t> index;
  auto row = [&](const std::string& op) -> OpRow& {
    auto [it, fresh] = index.emplace(op, rows.size());
    if (fresh) rows.push_back(OpRow{op, std::nullopt});
    return rows[it->second];
  };
  for (const json& site : list(r, "sites")) {
    OpRow& o = row(text(site, "op"));
    if (!has(site, "local")) continue;
    o.sites++;
    if (local_failed(site)) o.failed++;
    if (auto ratio = number(member(site, "local"), "ratio"))
      o.worst = o.worst ? std::max(*o.worst, *ratio) : *ratio;
  }
  for (const json& u : list(r, "unsupported")) row(text(u, "op")).unsupported++;
  // Worst first: the op to look at is on top. Ops with no measurement go last.
  std::stable_sort(rows.begin(), rows.end(), [](const OpRow& a, const OpRow& b) {
    if (a.worst.has_value() != b.worst.has_value()) return a.worst.has_value();
    return a.worst && *a.worst > *b.worst;
  });
  return rows;
}

std::string ops_chart(const json& r, const Culprits& culprits) {
  std::vector<OpRow> rows = op_rows(r);
  const double W = 1000, L = 150, R = 250, T = 40, ROW = 30, B = 36;
  double H = T + ROW * std::max<size_t>(rows.size(), 1) + B;
  std::vector<double> values;
  for (auto& o : rows)
    if (o.worst) values.push_back(*o.worst);
  LogAxis a = fit_axis(values, {1.0, 10.0});
  a.p_lo = L, a.p_hi = W - R;
  std::string s = svg_open("ops-chart", W, H,
                           "worst local error per op as a multiple of its "
                           "tolerance");
  double y_end = T + ROW * std::max<size_t>(rows.size(), 1);
  for (int e : a.ticks()) {
    double x = a.pos(std::pow(10.0, e));
    s += "<line class=\"grid\" x1=\"" + px(x) + "\" x2=\"" + px(x) + "\" y1=\"" + px(T - 6) +
         "\" y2=\"" + px(y_end) + "\"/>";
    s += "<text class=\"tick\" x=\"" + px(x) + "\" y=\"" + px(y_end + 16) +
         "\" text-anchor=\"middle\">" + a.label(e) + "</text>";
  }
  s += "<text class=\"axis-title\" x=\"" + px((L + W - R) / 2) + "\" y=\"" + px(y_end + 32) +
       "\" text-anchor=\"middle\">worst local error ÷ tolerance (log)</text>";
  double tol = a.pos(1.0);
  s += "<g class=\"legend\" transform=\"translate(" + px(L) +
       " 16)\">"
       "<rect class=\"swatch pass\" width=\"10\" height=\"10\" y=\"-9\"/>"
       "<text x=\"15\">within tolerance</text>"
       "<rect class=\"swatch fail\" x=\"140\" width=\"10\" height=\"10\" y=\"-9\"/>"
       "<text x=\"155\">beyond tolerance</text></g>";
  if (rows.empty())
    s += "<text class=\"empty\" x=\"" + px((L + W - R) / 2) + "\" y=\"" + px(T + ROW / 2 + 4) +
         "\" text-anchor=\"middle\">no per-op measurements in this report</text>";
  for (size_t i = 0; i < rows.size(); i++) {
    const OpRow& o = rows[i];
    double cy = T + (i + 0.5) * ROW;
    bool culprit = culprits.ops.count(o.op) > 0;
    bool over = o.worst && *o.worst > 1;
    std::string tip = o.op + ": worst local " + fmt(o.worst) + " × tolerance over " +
                      std::to_string(o.sites) + " site" + (o.sites == 1 ? "" : "s") + ", " +
                      std::to_string(o.failed) + " failed";
    if (o.unsupported) tip += "; " + std::to_string(o.unsupported) + " not supported by the target";
    s += "<g class=\"op-row " + std::string(over ? "fail" : "pass") + "\"><title>" + esc(tip) +
         "</title>";
    s += "<text class=\"op-name" + std::string(culprit ? " culprit-op" : "") + "\" x=\"" +
         px(L - 10) + "\" y=\"" + px(cy + 4) + "\" text-anchor=\"end\">" + esc(o.op) + "</text>";
    std::string note;
    if (o.worst && *o.worst == 0) {
      note = "exact";  // every call identical to the source: no bar on a log scale
    } else if (o.worst) {
      double x = a.pos(*o.worst);
      s += "<rect x=\"" + px(L) + "\" y=\"" + px(cy - 8) + "\" width=\"" +
           px(std::max(x - L, 1.5)) + "\" height=\"16\" rx=\"2\"/>";
      note = (std::isinf(*o.worst) ? std::string("∞") : fmt(*o.worst)) + "×";
    } else {
      note = o.unsupported ? "" : "not checked";
    }
    if (o.sites) note += "  ·  " + std::to_string(o.sites) + " site" + (o.sites == 1 ? "" : "s");
    if (o.failed) note += ", " + std::to_string(o.failed) + " failed";
    if (o.unsupported)
      note += (note.empty() ? "" : ", ") + std::to_string(o.unsupported) +
              " not supported on the target";
    if (culprit) note += "  ·  culprit";
    s += "<text class=\"bar-note" + std::string(culprit ? " culprit-op" : "") + "\" x=\"" +
         px(W - R + 10) + "\" y=\"" + px(cy + 4) + "\">" + esc(note) + "</text></g>";
  }
  s += "<line class=\"threshold\" x1=\"" + px(tol) + "\" x2=\"" + px(tol) + "\" y1=\"" + px(T - 6) +
       "\" y2=\"" + px(y_end) + "\"/>";
  s += "<text class=\"ref-label threshold-label\" x=\"" + px(tol + 4) + "\" y=\"" + px(T - 8) +
       "\">tolerance (1.0)</text>";
  s += "<line class=\"axis\" x1=\"" + px(L) + "\" x2=\"" + px(L) + "\" y1=\"" + px(T - 6) +
       "\" y2=\"" + px(y_end) + "\"/>";
  s += "</svg>";
  return s;
}

// A numeric cell; `data-v` holds the value the table's script sorts by (JavaScript reads
// "Infinity"), absent when there is none.
std::string num_cell(std::optional<double> v, const std::string& shown_html) {
  std::string s = "<td class=\"num\"";
  if (v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", *v);
    s += " data-v=\"" + std::string(std::isinf(*v) ? (*v > 0 ? "Infinity" : "-Infinity") : buf) +
         "\"";
  }
  return s + ">" + shown_html + "</td>";
}

std::string site_table(const json& r, const Culprits& culprits) {
  const json& sites = list(r, "sites");
  if (sites.empty()) return "<p class=\"muted\">No per-site measurements in this report.</p>";
  // Complete without scripts, in model order; the page's script adds sorting and a filter.
  std::string s =
      "<div class=\"scroll\"><table class=\"data sites\"><thead><tr><th>site</th>"
      "<th>op</th><th class=\"num\">layer</th><th class=\"num\">local ÷ tol.</th>"
      "<th>check</th><th class=\"num\">calls</th><th class=\"num\">failed</th>"
      "<th class=\"num\">local error</th><th class=\"num\">propagated error</th>"
      "<th class=\"num\">amplification</th>"
      "</tr></thead><tbody>";
  for (size_t i = 0; i < sites.size(); i++) {
    const json& site = sites[i];
    const json& lo = member(site, "local");
    const json& pr = member(site, "propagated");
    std::string name = text(site, "site");
    bool culprit = culprits.sites.count(name) > 0;
    bool failed = has(site, "local") && local_failed(site);
    std::string cls = culprit ? "culprit" : failed ? "bad" : "";
    auto block = block_of(site);
    // The site column sorts by model order.
    s += "<tr" + (cls.empty() ? std::string() : " class=\"" + cls + "\"") + "><td data-v=\"" +
         std::to_string(i) + "\"><code>" + esc(name) + "</code>" +
         (culprit ? " <span class=\"badge fail\">culprit</span>" : "") +
         (culprits.latent.count(name) ? " <span class=\"badge latent\">latent</span>" : "") +
         "</td><td>" + esc(site, "op") + "</td>" +
         num_cell(block ? std::optional<double>(double(*block)) : std::nullopt,
                  block ? std::to_string(*block) : "—");
    s += num_cell(number(lo, "ratio"), esc(fmt(number(lo, "ratio")))) + "<td>";
    if (has(lo, "check")) {
      std::string check = text(lo, "check");
      s += "<span class=\"badge " + std::string(check == "pass" ? "pass" : "fail") + "\">" +
           esc(check) + "</span>";
    } else {
      s += has(site, "local") ? "" : "<span class=\"muted\">not checked</span>";
    }
    auto amp = number(site, "amplification");
    s += "</td>" + num_cell(number(lo, "calls"), esc(lo, "calls")) +
         num_cell(number(lo, "failed"), esc(lo, "failed")) +
         num_cell(number(lo, "error"), esc(fmt(number(lo, "error")))) +
         num_cell(number(pr, "error"), esc(fmt(number(pr, "error")))) +
         num_cell(amp, amp ? esc(fmt(*amp)) + "×" : "—") + "</tr>";
  }
  s += "</tbody></table></div>";
  return s;
}

// ---- next steps: commands to reproduce the report and dig into it. Each is rebuilt from the
// report's own fields, so it runs as printed; the report's "context" (when present) adds the
// command line that made it, when, with which tapml, and carved tests that fail.

// `site` as a regular expression that matches it alone (compare's --site searches).
std::string site_regex(const std::string& site) {
  std::string out = "^";
  for (char c : site) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out + "$";
}

// --source, --prompt and --steps as the migration ran; the defaults (source ref, one empty
// prompt) are left out.
std::string run_flags(const json& r) {
  std::string s;
  std::string source = text(r, "source");
  if (!source.empty() && source != "ref") s += " --source " + shell_word(source);
  const json& prompts = list(r, "prompts");
  if (!(prompts.size() == 1 && text(prompts[0]).empty()))
    for (const json& p : prompts) {
      // A prompt given as ids is labelled "ids:1,2,3".
      std::string t = text(p);
      s += t.rfind("ids:", 0) == 0 ? " --prompt-ids " + shell_word(t.substr(4))
                                   : " --prompt " + shell_word(t);
    }
  if (has(r, "steps")) s += " --steps " + shell_word(text(r, "steps"));
  if (has(r, "kv_cache") && text(r, "kv_cache") != "f32")
    s += " --kv-cache " + shell_word(text(r, "kv_cache"));
  return s;
}

std::string command_block(const std::string& command) {
  return "<pre class=\"command\"><code>" + esc(command) + "</code></pre>";
}

std::string next_steps_section(const json& r, const Culprits& culprits) {
  const json& context = member(r, "context");
  std::string reproduce = text(context, "command");
  bool own_command = reproduce.find(" migrate ") != std::string::npos &&
                     reproduce.find(" migrate ") < reproduce.find(" --");
  if (!own_command) {
    reproduce = "tapml migrate --model " + shell_word(text(r, "model")) + " --backend " +
                shell_word(text(r, "target"));
    std::string strategy = text(r, "strategy");
    if (!strategy.empty() && strategy != "auto") reproduce += " --strategy " + shell_word(strategy);
    reproduce += run_flags(r);
    const json& th = member(r, "thresholds");
    auto nmse = number(th, "nmse"), noise = number(th, "noise_nmse");
    // A threshold other than the calibrated one (100x the noise) was given on the command line.
    if (nmse && noise && std::fabs(*nmse - 100 * *noise) > 1e-6 * *nmse)
      reproduce += " --nmse-threshold " + shell_word(text(th, "nmse"));  // every digit
  }
  std::string s = "<dl class=\"steps\"><dt>Reproduce this migration</dt><dd>" +
                  command_block(reproduce) + "</dd>";
  if (!culprits.sites.empty()) {
    s += "<dt>Compare the culprit" + std::string(culprits.sites.size() == 1 ? "" : "s") +
         " alone: every call re-run on the target with the source's inputs</dt><dd>";
    for (const std::string& site : culprits.sites)
      s += command_block("tapml compare --model " + shell_word(text(r, "model")) + " --backend " +
                         shell_word(text(r, "target")) + " --site " + shell_word(site_regex(site)) +
                         run_flags(r));
    s += "</dd>";
  }
  const json& corpus = member(context, "corpus");
  const json& ids = list(corpus, "failing_tests");
  if (!ids.empty()) {
    const size_t shown = 20;
    s += "<dt>Replay the carved tests that fail on <code>" + esc(corpus, "backend") +
         "</code>, one op call each</dt><dd>";
    for (size_t i = 0; i < ids.size() && i < shown; i++)
      s += command_block("tapml test --corpus " + shell_word(text(corpus, "path")) + " --backend " +
                         shell_word(text(corpus, "backend")) + " --id " + text(ids[i]));
    if (ids.size() > shown)
      s += "<p class=\"muted\">and " + std::to_string(ids.size() - shown) +
           " more failing tests (the JSON report lists them all).</p>";
    s += "</dd>";
  }
  s += "</dl>";
  std::vector<std::string> made;
  if (has(context, "command")) made.push_back("by <code>" + esc(context, "command") + "</code>");
  if (has(context, "date")) made.push_back("on " + esc(context, "date"));
  if (has(context, "tapml_version")) made.push_back("with tapml " + esc(context, "tapml_version"));
  if (!made.empty()) {
    s += "<p class=\"provenance\">This report was made";
    for (const std::string& m : made) s += " " + m;
    s += ".</p>";
  } else {
    s += "<p class=\"provenance muted\">This report does not record the command that made it.</p>";
  }
  return s;
}

std::string coverage_section(const json& r) {
  const json& unsupported = list(r, "unsupported");
  size_t checked = 0;
  for (const json& site : list(r, "sites"))
    if (has(site, "local")) checked++;
  std::string s = "<p>" + std::to_string(checked) + " site" + (checked == 1 ? "" : "s") +
                  " checked on the target; ";
  if (unsupported.empty()) return s + "every site is supported by the target.</p>";
  s += std::to_string(unsupported.size()) + " not supported by it (they stay on the source):</p>";
  s += "<table class=\"data\"><thead><tr><th>site</th><th>op</th><th>reason</th></tr></thead>"
       "<tbody>";
  for (const json& u : unsupported)
    s += "<tr><td><code>" + esc(u, "site") + "</code></td><td>" + esc(u, "op") + "</td><td>" +
         esc(u, "reason") + "</td></tr>";
  return s + "</tbody></table>";
}

// The page's one script: sorting and a filter for the site table. It only reorders and hides
// rows the page already holds (it reads no report data and writes no markup from it), and
// builds its controls itself, so a reader without scripts gets the whole table and no
// control that does nothing. The CSP allows it by its hash and refuses every other script.
constexpr const char* kSiteTableScript = R"JS(
(function () {
  var table = document.querySelector('table.sites');
  if (!table || !table.tBodies.length) return;
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);

  var bar = document.createElement('div');
  bar.className = 'table-controls';
  var filter = document.createElement('input');
  filter.type = 'search';
  filter.placeholder = 'filter: site or op (text or regular expression)';
  filter.setAttribute('aria-label', 'filter the sites by site or op');
  var failing = document.createElement('input');
  failing.type = 'checkbox';
  var label = document.createElement('label');
  label.appendChild(failing);
  label.appendChild(document.createTextNode(' only failing sites'));
  var count = document.createElement('span');
  count.className = 'count';
  bar.appendChild(filter);
  bar.appendChild(label);
  bar.appendChild(count);
  table.parentNode.parentNode.insertBefore(bar, table.parentNode);

  function matcher(text) {
    try {
      var re = new RegExp(text, 'i');
      return function (s) { return re.test(s); };
    } catch (e) {
      var needle = text.toLowerCase();
      return function (s) { return s.toLowerCase().indexOf(needle) >= 0; };
    }
  }
  function apply() {
    var match = matcher(filter.value), shown = 0;
    rows.forEach(function (r) {
      var site = r.cells[0].querySelector('code').textContent, op = r.cells[1].textContent;
      var bad = r.classList.contains('bad') || r.classList.contains('culprit');
      var show = (match(site) || match(op)) && (!failing.checked || bad);
      r.hidden = !show;
      if (show) shown++;
    });
    count.textContent = shown + ' of ' + rows.length + ' sites';
  }
  filter.addEventListener('input', apply);
  failing.addEventListener('change', apply);

  // A value to sort by, or null: missing values go last whichever the direction.
  function key(row, col) {
    var cell = row.cells[col], v = cell.getAttribute('data-v');
    if (v !== null) return parseFloat(v);
    if (heads[col].classList.contains('num')) return null;
    var t = cell.textContent.trim();
    return t === '' || t === '—' ? null : t;
  }
  var sorted = {col: -1, dir: 1};
  function sort(col) {
    // Numbers start worst (largest) first, text A to Z; a second click reverses.
    var dir = sorted.col === col ? -sorted.dir : heads[col].classList.contains('num') ? -1 : 1;
    if (col === 0 && sorted.col !== 0) dir = 1;  // the site column: model order first
    sorted = {col: col, dir: dir};
    var order = rows.map(function (r, i) { return {row: r, key: key(r, col), i: i}; });
    order.sort(function (a, b) {
      if (a.key === null || b.key === null)
        return a.key === b.key ? a.i - b.i : a.key === null ? 1 : -1;
      if (a.key < b.key) return -dir;
      if (a.key > b.key) return dir;
      return a.i - b.i;
    });
    order.forEach(function (o) { body.appendChild(o.row); });
    heads.forEach(function (h, c) {
      if (c === col) h.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
      else h.removeAttribute('aria-sort');
    });
  }
  heads.forEach(function (th, col) {
    var button = document.createElement('button');
    button.type = 'button';
    button.title = 'sort by ' + th.textContent;
    while (th.firstChild) button.appendChild(th.firstChild);
    th.appendChild(button);
    button.addEventListener('click', function () { sort(col); });
  });
  table.setAttribute('data-interactive', '');
  apply();
})();
)JS";

// Inline styles only: the page must render identically offline and from a CI artifact.
constexpr const char* kStyle = R"CSS(
:root { --pass: #1a7f37; --fail: #cf222e; --local: #0969da; --prop: #bc4c00;
        --ink: #1f2328; --muted: #656d76; --line: #d0d7de; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 14px/1.5 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 20px 48px; }
header h1 { margin: 0 0 2px; font-size: 24px; }
header .model { font-family: ui-monospace, "DejaVu Sans Mono", monospace; color: var(--muted);
                word-break: break-all; margin-bottom: 12px; }
dl.meta { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr));
          gap: 8px 16px; margin: 0 0 20px; }
dl.meta div { background: #fff; border: 1px solid var(--line); border-radius: 6px;
              padding: 6px 10px; min-width: 0; }
dl.meta dt { font-size: 11px; text-transform: uppercase; letter-spacing: .04em;
             color: var(--muted); }
dl.meta dd { margin: 0; word-break: break-word; }
dl.meta div.wide { grid-column: span 2; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px;
       word-break: break-all; }
section.card, .verdict { background: #fff; border: 1px solid var(--line); border-radius: 8px;
                         padding: 16px 20px; margin: 0 0 20px; }
section h2 { margin: 0 0 4px; font-size: 18px; }
section p.what { margin: 0 0 10px; color: var(--muted); }
.verdict { display: flex; gap: 20px; align-items: flex-start; border-width: 2px; }
.verdict .status { font-weight: 700; font-size: 22px; color: #fff; border-radius: 6px;
                   padding: 8px 16px; white-space: nowrap; }
.verdict.pass { border-color: var(--pass); background: #f0fff4; }
.verdict.fail { border-color: var(--fail); background: #fff5f5; }
.verdict.unknown { border-color: var(--muted); }
.verdict.pass .status { background: var(--pass); }
.verdict.fail .status { background: var(--fail); }
.verdict.unknown .status { background: var(--muted); }
.verdict .headline { font-size: 17px; font-weight: 600; margin: 2px 0 6px; }
.verdict h3 { font-size: 14px; margin: 12px 0 4px; }
.verdict p { margin: 4px 0; }
ul.culprits { margin: 0; padding-left: 18px; }
ul.culprits li { margin-bottom: 6px; }
.evidence { color: var(--ink); font-size: 13px; }
.op-tag { display: inline-block; background: #ddf4ff; color: #0550ae; border-radius: 10px;
          padding: 0 8px; font-size: 12px; }
.muted { color: var(--muted); }
svg.chart { width: 100%; height: auto; display: block; font-size: 12px;
            font-family: system-ui, "DejaVu Sans", sans-serif; }
svg .grid { stroke: #eaeef2; stroke-width: 1; }
svg .axis { stroke: #8c959f; stroke-width: 1; }
svg .tick { fill: var(--muted); font-size: 11px; }
svg .axis-title { fill: var(--muted); font-size: 12px; }
svg .xlabel { fill: var(--ink); font-size: 11px; }
svg .xlabel.culprit-x { fill: var(--fail); font-weight: 700; }
svg .threshold { stroke: var(--fail); stroke-width: 1.2; stroke-dasharray: 6 4; }
svg .noise { stroke: #8c959f; stroke-width: 1; stroke-dasharray: 2 3; }
svg .ref-label { font-size: 11px; fill: var(--muted); }
svg .threshold-label { fill: var(--fail); }
svg .halo { paint-order: stroke; stroke: #fff; stroke-width: 4px; stroke-linejoin: round; }
svg .exact-tick { font-style: italic; }
svg .exact-grid { stroke-dasharray: 2 3; }
svg .exact, svg .swatch-exact { fill: #fff; stroke-width: 1.5; }
svg .series.local .exact, svg .swatch-exact { stroke: var(--local); }
svg .series.prop .exact { stroke: var(--prop); }
svg .bar-value.exact-value { fill: var(--pass); font-style: italic; }
svg .step.pass rect, svg .swatch.pass, svg .op-row.pass rect { fill: var(--pass); }
svg .step.fail rect, svg .swatch.fail, svg .op-row.fail rect { fill: var(--fail); }
svg .bar-value { font-size: 11px; fill: var(--ink); }
svg .legend text { font-size: 12px; fill: var(--ink); }
svg .empty { fill: var(--muted); font-style: italic; }
svg .series .line { fill: none; stroke-width: 1.5; }
svg .series.local .line { stroke: var(--local); }
svg .series.prop .line { stroke: var(--prop); }
svg .series.local circle, svg .swatch-local { fill: var(--local); }
svg .series.prop circle, svg .swatch-prop { fill: var(--prop); }
svg .series .bad circle { fill: var(--fail); stroke: #fff; stroke-width: 1; }
svg .infinite { fill: var(--fail); font-weight: 700; font-size: 13px; }
svg .culprit-band, svg .swatch-culprit { fill: var(--fail); fill-opacity: .13; }
svg .culprit-label { fill: var(--fail); font-weight: 700; font-size: 12px; }
svg .layer-sep { stroke: #d8dee4; stroke-dasharray: 3 3; }
svg .op-name { font-size: 13px; fill: var(--ink);
               font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
svg .op-name.culprit-op { fill: var(--fail); font-weight: 700; }
svg .bar-note { font-size: 12px; fill: var(--muted); }
svg .bar-note.culprit-op { fill: var(--fail); font-weight: 600; }
table.data { width: 100%; border-collapse: collapse; font-size: 13px; margin-top: 10px; }
table.data th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px;
                border-bottom: 2px solid var(--line); padding: 4px 6px; }
table.data td { border-bottom: 1px solid #eaeef2; padding: 3px 6px; vertical-align: top; }
.scroll { overflow-x: auto; }
table.data .num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.data tr.bad td { background: #fff5f5; }
table.data tr.culprit td { background: #ffe3e3; font-weight: 600; }
table.sites td:first-child code, table.data td .muted { white-space: nowrap; word-break: normal; }
table.data details summary { color: var(--muted); cursor: pointer; font-size: 12px; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px;
         font-weight: 600; color: #fff; }
.badge.pass { background: var(--pass); }
.badge.fail { background: var(--fail); }
.badge.latent { background: #9a6700; }
.cause h4 { font-size: 13px; margin: 8px 0 2px; }
ul.latent { margin: 0; padding-left: 18px; }
ul.latent li { margin-bottom: 6px; }
footer { color: var(--muted); font-size: 12px; text-align: center; }
dl.steps { margin: 0; }
dl.steps dt { font-weight: 600; margin-top: 8px; }
dl.steps dd { margin: 2px 0 0; }
pre.command { margin: 2px 0; padding: 6px 10px; background: var(--bg); border: 1px solid var(--line);
              border-radius: 6px; white-space: pre-wrap; overflow-wrap: anywhere; }
pre.command code { word-break: normal; }
p.provenance { margin: 10px 0 0; font-size: 13px; }
.table-controls { display: flex; gap: 14px; align-items: center; margin-top: 8px;
                  flex-wrap: wrap; font-size: 13px; }
.table-controls input[type=search] { flex: 1 1 260px; max-width: 420px; padding: 4px 8px;
                                     border: 1px solid var(--line); border-radius: 6px;
                                     font: inherit; }
.table-controls .count { color: var(--muted); }
table.sites th button { all: unset; cursor: pointer; }
table.sites th button:focus-visible { outline: 2px solid var(--local); }
table.sites th button::after { content: " \2195"; color: #afb8c1; }
table.sites th[aria-sort=ascending] button::after { content: " \25B2"; color: var(--ink); }
table.sites th[aria-sort=descending] button::after { content: " \25BC"; color: var(--ink); }
)CSS";

std::string card(const char* id, const std::string& title, const std::string& what,
                 const std::string& body) {
  return "<section class=\"card\" id=\"" + std::string(id) + "\"><h2>" + title +
         "</h2><p class=\"what\">" + what + "</p>" + body + "</section>";
}

}  // namespace

std::string migrate_html(const json& report) {
  TAPML_REQUIRE(report.is_object(), "migrate report: expected a JSON object");
  std::string format = text(report, "format");
  TAPML_REQUIRE(format == kFormat, "migrate report: format '" + format + "', expected '" + kFormat +
                                       "' (the JSON written by tapml migrate)");
  const json& version = member(report, "version");
  TAPML_REQUIRE(version.is_number_integer() && version.get<int64_t>() >= kOldestVersion &&
                    version.get<int64_t>() <= kVersion,
                "migrate report: version " + text(version) + ", this build reads " +
                    std::to_string(kOldestVersion) + "-" + std::to_string(kVersion));

  Culprits culprits = culprits_of(report);
  std::string title = "TapML migrate";
  if (has(report, "target")) title += ": " + text(report, "target");
  title += " — " + std::string(status_of(report));

  std::string h;
  h.reserve(64 * 1024);
  h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
       // No fetches, and no script but the page's own, allowed by its hash: a site name
       // that slipped past escaping still could not run.
       "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
       "style-src 'unsafe-inline'; script-src " +
       csp_script_hash(kSiteTableScript) +
       "\">"
       "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
       "<title>" +
       esc(title) + "</title><style>" + kStyle + "</style></head><body><main>";
  h += header_section(report);
  h += verdict_section(report, culprits);
  h += latent_section(report);
  h += card("next-steps", "Next steps", "Commands to reproduce this report and to dig into it.",
            next_steps_section(report, culprits));
  h += card("timeline", "Migration timeline",
            "Each step moves more of the model to the target and runs it end to end; the bar is "
            "the NMSE of the logits against the source. Hover a bar for details.",
            timeline_chart(report) + timeline_table(report));
  h += card("network", "Error along the network",
            "Per site in model order. Top: the op's own error (fed the source's inputs) as a "
            "multiple of its tolerance. Bottom: the error it carries when its inputs come from the "
            "target. ∞ marks NaN, Inf or an out-of-bounds write.",
            network_chart(report, culprits));
  h += card("ops", "Tolerance ratios per op",
            "The worst local error of each op over its sites, as a multiple of its tolerance.",
            ops_chart(report, culprits));
  h += card("sites", "Sites", "Every measured site, in model order.", site_table(report, culprits));
  h += card("coverage", "Coverage", "Sites the target cannot run.", coverage_section(report));
  h += "<footer>" + esc(format) + " v" + text(version) + " · written by tapml migrate</footer>";
  h += "</main><script>" + std::string(kSiteTableScript) + "</script></body></html>\n";
  return h;
}

}  // namespace tapml

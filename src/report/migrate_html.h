// The HTML view of a `tapml migrate` report: one self-contained page (inline CSS, charts
// drawn as inline SVG, nothing fetched from the network; one inline script, allowed by its
// hash in the page's CSP, sorts and filters the site table, and the page reads in full
// without it) with a header, the verdict (id
// `verdict`, attribute `data-status` = pass | fail | unknown; the culprits by cause group and
// the groups not run), the latent sites (section `latent`, lists of class `latent` by cause;
// only for reports of version 2, which list them), the next steps (section
// `next-steps`: the commands that reproduce the migration, compare each culprit alone and,
// when the report's "context" lists them, replay the carved tests that fail; the command
// line, date and tapml version that made the report), the migration timeline (svg
// `timeline-chart`), the error along the network per site (svg `network-chart`), the worst
// tolerance ratio per op (svg `ops-chart`), a site table and the list of unsupported sites.
//
// The input is the canonical JSON (format "tapml-migrate-report", version 1 or 2). Only
// `format` and `version` are required; every other field may be absent and is then left
// out of the page. A null ratio or error means infinite (NaN, Inf or a guard failure) and is
// drawn at the top of its axis marked "∞"; an exact zero has no place on a log axis and is
// marked "exact" instead. Sites with a negative layer are outside the blocks and go by their
// names. Every string taken from the report is HTML-escaped.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace tapml {

// Throws tapml::Error when `report` is not an object, its format is not
// "tapml-migrate-report", or its version is not one this build reads (1-2).
std::string migrate_html(const nlohmann::json& report);

}  // namespace tapml

// Reads XML the way a CI server does: with a strict parser (python3's xml.etree, on expat),
// so a report that is not well-formed fails the test instead of passing a substring search.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "support/shared.h"

namespace tapml::testing {

// The document as a JSON tree: every element is {"tag", "attrib", "text", "children"}, where
// "text" is the element's own text (ElementTree's .text). Throws std::runtime_error with the
// parser's message when the XML is not well-formed.
inline nlohmann::json parse_xml_strictly(const std::string& xml) {
  const char* python = "/usr/bin/python3";
  if (::access(python, X_OK) != 0)
    throw std::runtime_error("/usr/bin/python3 is missing (scripts/install-deps installs it)");
  std::string dir = temp_dir();
  std::ofstream(dir + "/doc.xml", std::ios::binary) << xml;
  std::ofstream(dir + "/tree.py") << R"PY(
import json, sys, xml.etree.ElementTree as ET
def tree(e):
    return {"tag": e.tag, "attrib": dict(e.attrib), "text": e.text or "",
            "children": [tree(c) for c in e]}
print(json.dumps(tree(ET.parse(sys.argv[1]).getroot())))
)PY";
  auto r = run_command(std::string(python) + " " + shell_quote(dir + "/tree.py") + " " +
                       shell_quote(dir + "/doc.xml"));
  if (r.exit_code != 0) throw std::runtime_error("not well-formed XML: " + r.err);
  return nlohmann::json::parse(r.out);
}

// The children of `element` with this tag.
inline std::vector<nlohmann::json> children(const nlohmann::json& element, const std::string& tag) {
  std::vector<nlohmann::json> out;
  for (const auto& c : element.at("children"))
    if (c.at("tag") == tag) out.push_back(c);
  return out;
}

}  // namespace tapml::testing

#include "report/junit.h"

#include <cstdio>

#include "report/stamp.h"
#include "report/xml.h"

namespace tapml {

namespace {

std::string seconds_text(double s) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.6f", s);
  return buf;
}

struct Counts {
  size_t tests = 0, failures = 0, skipped = 0;
  double seconds = 0;
  void add(const JunitCase& c) {
    tests++;
    failures += c.outcome == JunitOutcome::Failure;
    skipped += c.outcome == JunitOutcome::Skipped;
    seconds += c.seconds;
  }
  void add(const Counts& o) {
    tests += o.tests, failures += o.failures, skipped += o.skipped, seconds += o.seconds;
  }
  std::string attributes() const {
    return " tests=\"" + std::to_string(tests) + "\" failures=\"" + std::to_string(failures) +
           "\" errors=\"0\" skipped=\"" + std::to_string(skipped) + "\" time=\"" +
           seconds_text(seconds) + "\"";
  }
};

}  // namespace

JunitStamp JunitStamp::now() {
  std::string t = utc_iso8601();
  if (!t.empty() && t.back() == 'Z') t.pop_back();
  return {t, host_name()};
}

std::string junit_document(const std::string& name, const std::vector<JunitSuite>& suites,
                           const JunitStamp& stamp) {
  Counts total;
  std::string body;
  for (const JunitSuite& suite : suites) {
    Counts counts;
    std::string cases;
    for (const JunitCase& c : suite.cases) {
      counts.add(c);
      cases += "    <testcase classname=\"" + xml_escape(c.classname) + "\" name=\"" +
               xml_escape(c.name) + "\" time=\"" + seconds_text(c.seconds) + "\"";
      if (c.outcome == JunitOutcome::Pass) {
        cases += "/>\n";
        continue;
      }
      if (c.outcome == JunitOutcome::Skipped)
        cases += ">\n      <skipped message=\"" + xml_escape(c.message) + "\"/>\n";
      else
        cases += ">\n      <failure type=\"" + xml_escape(c.type) + "\" message=\"" +
                 xml_escape(c.message) + "\">" + xml_text(c.body) + "</failure>\n";
      cases += "    </testcase>\n";
    }
    total.add(counts);
    body += "  <testsuite name=\"" + xml_escape(suite.name) + "\"" + counts.attributes() +
            " timestamp=\"" + xml_escape(stamp.timestamp) + "\" hostname=\"" +
            xml_escape(stamp.hostname) + "\">\n" + cases + "  </testsuite>\n";
  }
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"" + xml_escape(name) +
         "\"" + total.attributes() + ">\n" + body + "</testsuites>\n";
}

}  // namespace tapml

// JUnit XML as CI servers read it (Jenkins, GitLab, GitHub Actions): the totals on
// <testsuites>; on each <testsuite> every count, when and where it ran; and each failure's
// whole story in the <failure> body (not only its one-line message attribute), so a
// dashboard shows what broke and how to reproduce it without the JSON report.
#pragma once
#include <string>
#include <vector>

namespace tapml {

struct JunitStamp {
  // UTC as "2025-12-01T14:20:11": ISO 8601 without a zone, the one form every JUnit
  // schema accepts (Jenkins' junit-10.xsd restricts it to that pattern).
  std::string timestamp;
  std::string hostname;
  static JunitStamp now();  // this moment, on this machine
};

enum class JunitOutcome { Pass, Failure, Skipped };

struct JunitCase {
  std::string classname, name;
  double seconds = 0;
  JunitOutcome outcome = JunitOutcome::Pass;
  std::string type;     // a failure's kind: the deciding check ("numeric", "nan", "error", ...)
  std::string message;  // one line: a failure's detail, or why the case was skipped
  std::string body;     // a failure's full text: the detail and the command that reproduces it
};

struct JunitSuite {
  std::string name;
  std::vector<JunitCase> cases;
};

// The document, well-formed whatever the strings hold. `errors` is 0 throughout: a target
// that throws has failed its test and counts with the failures (type "error"), as in the
// summaries tapml prints; the harness's own errors end a run rather than a test.
std::string junit_document(const std::string& name, const std::vector<JunitSuite>& suites,
                           const JunitStamp& stamp);

}  // namespace tapml

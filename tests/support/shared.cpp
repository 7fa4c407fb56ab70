#include "support/shared.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace tapml::testing {

namespace fs = std::filesystem;

std::string shared_path(const std::string& relative) {
  const char* env = std::getenv("TAPML_SHARED");
  fs::path root = env && *env ? fs::path(env) : fs::path(TAPML_SOURCE_DIR) / ".." / "shared";
  fs::path p = root / relative;
  if (!fs::exists(p)) {
    std::string msg =
        "shared data missing: " + p.string() + " (set TAPML_SHARED to the shared/ folder)";
    ADD_FAILURE() << msg;
    throw std::runtime_error(msg);
  }
  return p.lexically_normal().string();
}

std::string tapml_binary() { return TAPML_BINARY; }

std::string shell_quote(const std::string& arg) {
  std::string q = "'";
  for (char c : arg) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  return q + "'";
}

namespace {
// The process's scratch folder, removed with everything in it when the process exits.
class ScratchRoot {
 public:
  ScratchRoot() {
    std::string tmpl = (fs::temp_directory_path() / "tapml_test_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~ScratchRoot() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};
}  // namespace

std::string temp_dir() {
  static ScratchRoot root;
  static int counter = 0;
  fs::path p = root.path() / std::to_string(counter++);
  fs::create_directories(p);
  return p.string();
}

namespace {
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
}  // namespace

CommandResult run_command(const std::string& command_line) {
  fs::path dir = temp_dir();
  fs::path out = dir / "stdout", err = dir / "stderr";
  std::string full = command_line + " >" + shell_quote(out.string()) + " 2>" +
                     shell_quote(err.string()) + " </dev/null";
  int status = std::system(full.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

}  // namespace tapml::testing

// Progress of long jobs on stderr, for every command alike. On a terminal one line is redrawn
// at most four times a second ("carving: 37/192 positions, 41.2/s, ETA 4 s  blk.3.attn"); in a
// log (not a terminal) a line is printed every 5 seconds (TAPML_PROGRESS_SECONDS changes that),
// so a CI job never looks hung. -q silences it; -v lets a command say more about each step.
#pragma once
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace tapml::cli {

struct Verbosity {
  bool quiet = false, verbose = false;
};

// Adds -q/--quiet and -v/--verbose to a subcommand.
inline void add_verbosity(CLI::App* c, Verbosity& v) {
  c->add_flag("-q,--quiet", v.quiet, "no progress on stderr");
  c->add_flag("-v,--verbose", v.verbose, "say more about each step");
}

class Progress {
 public:
  // `total` 0 means unknown (no ETA).
  Progress(std::string label, std::string unit, int64_t total, bool quiet)
      : label_(std::move(label)),
        unit_(std::move(unit)),
        total_(total),
        quiet_(quiet),
        tty_(isatty(2)),
        every_(interval(tty_)),
        start_(clock::now()),
        last_(start_) {}
  ~Progress() { finish(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void set_total(int64_t total) { total_ = total; }
  // A new stretch of work with its own count and rate.
  void restart(std::string label, int64_t total) {
    label_ = std::move(label);
    total_ = total;
    done_ = 0;
    start_ = clock::now();
  }
  // Reports `done` units so far; `note` says what is being done now.
  void update(int64_t done, const std::string& note = "") {
    done_ = done;
    if (quiet_) return;
    auto now = clock::now();
    double since = std::chrono::duration<double>(now - last_).count();
    if (since < every_) return;
    last_ = now;
    print(note);
  }
  // Clears the line on a terminal (the command's own output follows).
  void finish() {
    if (quiet_ || finished_) return;
    finished_ = true;
    if (tty_ && printed_) std::fprintf(stderr, "\r%*s\r", int(width_), "");
  }
  // A line of its own (a step's result), keeping the progress line below it.
  void say(const std::string& line) {
    if (quiet_) return;
    if (tty_ && printed_) std::fprintf(stderr, "\r%*s\r", int(width_), "");
    std::fprintf(stderr, "%s\n", line.c_str());
    printed_ = false;
  }

 private:
  using clock = std::chrono::steady_clock;
  // Seconds between lines: TAPML_PROGRESS_SECONDS if it is a number >= 0, else 0.25 on a
  // terminal and 5 in a log.
  static double interval(bool tty) {
    if (const char* e = std::getenv("TAPML_PROGRESS_SECONDS")) {
      char* end = nullptr;
      double v = std::strtod(e, &end);
      if (end != e && *end == '\0' && v >= 0) return v;
    }
    return tty ? 0.25 : 5.0;
  }
  void print(const std::string& note) {
    double elapsed = std::chrono::duration<double>(clock::now() - start_).count();
    double rate = elapsed > 0 ? double(done_) / elapsed : 0;
    char buf[256];
    int n = total_ > 0 ? std::snprintf(buf, sizeof buf, "%s: %lld/%lld %s", label_.c_str(),
                                       (long long)done_, (long long)total_, unit_.c_str())
                       : std::snprintf(buf, sizeof buf, "%s: %lld %s", label_.c_str(),
                                       (long long)done_, unit_.c_str());
    std::string line(buf, size_t(std::max(n, 0)));
    if (rate > 0) {
      std::snprintf(buf, sizeof buf, ", %.3g/s", rate);
      line += buf;
      if (total_ > done_) {
        std::snprintf(buf, sizeof buf, ", ETA %.0f s", double(total_ - done_) / rate);
        line += buf;
      }
    }
    if (!note.empty()) line += "  " + note;
    if (tty_) {
      if (line.size() > 100) line.resize(100);
      std::fprintf(stderr, "\r%-*s", int(width_), line.c_str());
      width_ = std::max(width_, line.size());
    } else {
      std::fprintf(stderr, "%s (%.0f s)\n", line.c_str(), elapsed);
    }
    printed_ = true;
  }

  std::string label_, unit_;
  int64_t total_ = 0, done_ = 0;
  bool quiet_, tty_, printed_ = false, finished_ = false;
  double every_;
  size_t width_ = 0;
  clock::time_point start_, last_;
};

}  // namespace tapml::cli

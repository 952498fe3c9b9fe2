// A progress line for long work (a scan, a replay, a thousand simulations): on stderr while it
// is a terminal, redrawn in place ("\r", then erase to the end of the line) at most ten times a
// second and erased when the work is done; silent otherwise, so pipes, files and logs get only
// the results.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace memtide {

class ProgressLine {
 public:
  ProgressLine() : ProgressLine(isatty(STDERR_FILENO) == 1) {}
  explicit ProgressLine(bool enabled) : enabled_(enabled) {}
  ~ProgressLine() { clear(); }
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // Shows `text` (trusted: numbers and names the operator gave) unless the last one is less than
  // 100 ms old; `now` shows it whatever its age.
  void show(const std::string& text, bool now = false) {
    const auto t = std::chrono::steady_clock::now();
    if (!enabled_ || (!now && shown_ && t - last_ < std::chrono::milliseconds(100))) {
      return;
    }
    last_ = t;
    shown_ = true;
    std::fprintf(stderr, "\r\x1b[K%s", text.c_str());
    std::fflush(stderr);
  }
  // Erases the line (before results are printed to the same terminal).
  void clear() {
    if (shown_) {
      std::fputs("\r\x1b[K", stderr);
      std::fflush(stderr);
      shown_ = false;
    }
  }
  bool enabled() const { return enabled_; }

 private:
  bool enabled_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace memtide

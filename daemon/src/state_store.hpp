// When memtided loads and saves the policy's memory (daemon.state_file; the file format is in
// state_file.hpp): loaded once at start, saved after a tick that changed it materially, at least
// once a minute while it runs, and on stop. Every outcome is logged, a failing save once per
// distinct error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <memtide/policy/engine.hpp>
#include <memtide/report/tick_report.hpp>

#include "log.hpp"
#include "log_on_change.hpp"

namespace memtide::daemon {

class StateStore {
 public:
  StateStore(Logger& log, report::DaemonFigures& figures) : log_(log), figures_(figures) {}

  // daemon.state_file as configured ("auto", a path, or "" off).
  void configure(const std::string& state_file);

  // The saved state, when there is a usable one.
  std::optional<policy::PolicyState> load();

  // Saves `state` when `changed`, or a minute after the last save, or when `force`.
  void save(const policy::PolicyState& state, bool changed, bool force);

 private:
  Logger& log_;
  report::DaemonFigures& figures_;
  std::string path_;              // resolved; "" off
  std::uint64_t saved_usec_ = 0;  // CLOCK_MONOTONIC of the last save
  LogOnChange error_;
};

}  // namespace memtide::daemon

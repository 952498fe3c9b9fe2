// When memtided loads and saves the policy's memory (daemon.state_file; the file format is in
// state_file.hpp): loaded once at start, saved after a tick that changed it materially, at least
// once a minute while it runs, and on stop. Its decision history (report/history.hpp) lives beside
// it, in kHistoryFileName in the same directory: loaded once at start whatever its age (its times
// are wall-clock times, and nothing in it steers the policy), saved at most once a minute while it
// grows, and on stop. Every outcome is logged, a failing save once per distinct error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <memtide/policy/engine.hpp>
#include <memtide/report/history.hpp>
#include <memtide/report/tick_report.hpp>

#include "log.hpp"
#include "log_on_change.hpp"

namespace memtide::daemon {

inline constexpr const char* kHistoryFileName = "decision-history.json";

class StateStore {
 public:
  StateStore(Logger& log, report::DaemonFigures& figures) : log_(log), figures_(figures) {}

  // daemon.state_file as configured ("auto", a path, or "" off).
  void configure(const std::string& state_file);

  // The saved state, when there is a usable one.
  std::optional<policy::PolicyState> load();

  // Saves `state` when `changed`, or a minute after the last save, or when `force`.
  void save(const policy::PolicyState& state, bool changed, bool force);

  // The saved decision history, when there is a usable one.
  std::optional<report::History> load_history();
  // Saves `history` when it changed and a minute has passed since its last save, or when
  // `force`; marks it saved.
  void save_history(report::History& history, bool force);

 private:
  Logger& log_;
  report::DaemonFigures& figures_;
  std::string path_;              // resolved; "" off
  std::string history_path_;      // "" off
  std::uint64_t saved_usec_ = 0;  // CLOCK_MONOTONIC of the last save
  std::uint64_t history_saved_usec_ = 0;
  LogOnChange error_;
  LogOnChange history_error_;
};

}  // namespace memtide::daemon

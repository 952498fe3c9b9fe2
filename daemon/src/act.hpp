// memtided's "act" step: carries out a plan with the actuators (balloon commands within the
// tick's time budget, KSM settings, huge-page release) unless memtide only decides (dry run or
// paused), logs every change and failure, counts them, and keeps the last balloon commands for
// `memtidectl status`. Also the restore on stop (daemon.on_stop: restore).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <memtide/actuators/huge_page_release.hpp>
#include <memtide/actuators/ksm_writer.hpp>
#include <memtide/collectors/hypervisor_worker.hpp>
#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>
#include <memtide/policy/engine.hpp>
#include <memtide/report/tick_report.hpp>

#include "log.hpp"
#include "log_on_change.hpp"

namespace memtide::daemon {

class Actions {
 public:
  // `figures` (the daemon's counters, also holding `paused`) outlives this.
  Actions(Logger& log, report::DaemonFigures& figures) : log_(log), figures_(figures) {}

  // Points the KSM writer and the huge-page release at the configured sysfs and procfs.
  void configure(const config::Config& config);

  struct Done {
    std::map<std::string, std::string> failed;  // VM -> why its balloon command failed
    // CLOCK_MONOTONIC µs when the first balloon command of the tick was applied.
    std::optional<std::uint64_t> first_applied_usec;
    // The tick's commands and what became of them, as remembered for status (a command decided
    // again unchanged while not applied is not repeated).
    std::vector<report::RecentCommand> commands;
  };
  // Carries out `plan`, decided on `snapshot`. Commands not sent (dry run, paused, or carried
  // over when the tick's time ran out at `deadline`) are taken back out of `state` so the next
  // tick decides them again: the state (and the state file) records only commands sent.
  // `hypervisor` null: nothing can be sent (treated as a dry run).
  Done carry_out(const policy::Plan& plan, const Snapshot& snapshot, policy::PolicyState& state,
                 collectors::HypervisorWorker* hypervisor, const config::Config& config,
                 std::chrono::steady_clock::time_point deadline);

  // Gives every managed VM its maximum back (daemon.on_stop: restore), within
  // actuators::kRestoreBudget; each restore is recorded in `state` as a command to the maximum.
  // With daemon.dry_run nothing is changed: what a restore would do is logged.
  void restore_on_stop(collectors::HypervisorWorker& hypervisor, const config::Config& config,
                       const Snapshot* last, policy::PolicyState& state);

  const std::deque<report::RecentCommand>& recent() const { return recent_; }

 private:
  Done send_balloons(const policy::Plan& plan, const Snapshot& snapshot, policy::PolicyState& state,
                     collectors::HypervisorWorker* hypervisor, const config::Config& config,
                     std::chrono::steady_clock::time_point deadline);
  // Keeps the command for status and adds it to the tick's `done`.
  void remember(Done& done, std::int64_t unix_ms, const policy::BalloonChange& change,
                std::string outcome);
  // `only_decide`: why nothing may be written ("dry run", "paused"); null when memtide acts.
  void write_ksm(const policy::Plan& plan, const Snapshot& snapshot, const char* only_decide);
  void release_huge_pages(const Snapshot& snapshot, std::int64_t now_ms);

  static constexpr std::size_t kRecentCommands = 50;
  Logger& log_;
  report::DaemonFigures& figures_;
  std::unique_ptr<actuators::KsmWriter> ksm_;
  std::unique_ptr<actuators::HugePageRelease> huge_pages_;
  std::deque<report::RecentCommand> recent_;    // newest last
  std::optional<KsmSettings> ksm_not_applied_;  // last settings logged as not applied
  // The balloon commands of the last tick not applied (dry run or paused), by VM UUID: (from,
  // to) bytes. A command decided again unchanged is not logged again at notice.
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> not_applied_;
  LogOnChange ksm_error_;
  LogOnChange huge_page_error_;
};

}  // namespace memtide::daemon

#include <chrono>
#include <cstdlib>
#include <iostream>

#include <memtide/actuators/restore.hpp>
#include <memtide/collectors/collect.hpp>
#include <memtide/core/exit_code.hpp>

#include "commands.hpp"

namespace memtide::ctl {

int restore(const config::Config& config, bool dry_run, bool if_service_failed) {
  if (if_service_failed) {
    // Run by systemd as ExecStopPost: SERVICE_RESULT says how memtided ended. A clean stop has
    // already done what daemon.on_stop says; a crash, a kill or a watchdog timeout has not.
    const char* result = std::getenv("SERVICE_RESULT");
    if (result == nullptr || std::string(result) == "success") {
      return kExitOk;
    }
    if (config.daemon.on_stop != config::OnStop::restore) {
      std::cout << "memtided ended (" << result << "); daemon.on_stop is keep: nothing to do\n";
      return kExitOk;
    }
    std::cout << "memtided ended without restoring (" << result << "); restoring\n";
  }
  auto worker = collectors::make_libvirt_worker(config);
  const auto run =
      actuators::restore_within(*worker, config, dry_run, config.libvirt.timeout,
                                std::chrono::steady_clock::now() + actuators::kRestoreBudget);
  if (run.collect_error) {
    std::cerr << "memtidectl: " << run.collect_error->message << '\n';
    return kExitFailure;
  }
  int failures = 0;
  for (const auto& outcome : run.outcomes) {
    std::cout << actuators::describe(outcome) << '\n';
    failures += outcome.kind == actuators::RestoreOutcome::Kind::failed ? 1 : 0;
  }
  return failures == 0 ? kExitOk : kExitFailure;
}

}  // namespace memtide::ctl

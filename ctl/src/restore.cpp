#include <chrono>
#include <cstdlib>
#include <iostream>

#include <unistd.h>

#include <memtide/actuators/restore.hpp>
#include <memtide/collectors/collect.hpp>
#include <memtide/collectors/other_managers.hpp>
#include <memtide/core/exit_code.hpp>
#include <memtide/policy/coexist.hpp>

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
  // Balloons another manager resizes are not memtide's to restore (daemon.coexist). A memtided
  // still running is not such a manager here: a restore by hand is meant to override it.
  auto others = collectors::find_other_managers(config.daemon.procfs, static_cast<int>(getpid()));
  std::erase_if(others, [](const OtherManager& m) { return m.name == "memtided"; });
  if (const auto owner = policy::yielding_to(others, policy::Controls::balloons, config);
      !owner.empty()) {
    std::cout << "balloons are left to " << owner << " (daemon.coexist: auto): nothing restored\n";
    return kExitOk;
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

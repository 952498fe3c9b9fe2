#include <chrono>
#include <cstdlib>
#include <iostream>
#include <optional>

#include <sys/stat.h>
#include <unistd.h>

#include <memtide/actuators/restore.hpp>
#include <memtide/collectors/collect.hpp>
#include <memtide/collectors/other_managers.hpp>
#include <memtide/core/dry_run_marker.hpp>
#include <memtide/core/exit_code.hpp>
#include <memtide/policy/coexist.hpp>
#include <memtide/report/json_text.hpp>

#include "commands.hpp"
#include "terminal.hpp"

namespace memtide::ctl {

namespace {

const char* kind_name(actuators::RestoreOutcome::Kind kind) {
  using Kind = actuators::RestoreOutcome::Kind;
  switch (kind) {
    case Kind::restored:
      return "restored";
    case Kind::already_at_maximum:
      return "already-at-maximum";
    case Kind::unmanaged:
      return "unmanaged";
    case Kind::failed:
      return "failed";
    case Kind::dry_run:
      return "dry-run";
  }
  return "?";
}

// restore --json: one object, {"skipped": why nothing was done or null, "vms": [...]}.
void print_json(const std::optional<std::string>& skipped,
                const std::vector<actuators::RestoreOutcome>& outcomes) {
  nlohmann::json vms = nlohmann::json::array();
  for (const auto& o : outcomes) {
    vms.push_back({{"name", o.vm},
                   {"uuid", o.uuid},
                   {"outcome", kind_name(o.kind)},
                   {"from_bytes", o.from_bytes},
                   {"to_bytes", o.to_bytes},
                   {"detail", o.detail}});
  }
  std::cout << report::dump_json(nlohmann::json{{"skipped", skipped ? nlohmann::json(*skipped)
                                                                    : nlohmann::json()},
                                                {"vms", vms}},
                                 2)
            << '\n';
}

}  // namespace

int restore(const config::Config& config, bool dry_run, bool if_service_failed, bool json) {
  // What is said when nothing is done: a line, or the reason in the JSON.
  const auto nothing = [json](const std::string& why) {
    if (json) {
      print_json(why, {});
    } else {
      std::cout << why << '\n';
    }
    return kExitOk;
  };
  if (if_service_failed) {
    // Run by systemd as ExecStopPost: SERVICE_RESULT says how memtided ended. A clean stop has
    // already done what daemon.on_stop says; a crash, a kill or a watchdog timeout has not.
    const char* result = std::getenv("SERVICE_RESULT");
    if (result == nullptr || std::string(result) == "success") {
      return json ? nothing("memtided stopped cleanly") : kExitOk;
    }
    if (config.daemon.on_stop != config::OnStop::restore) {
      return nothing(std::string("memtided ended (") + result +
                     "); daemon.on_stop is keep: nothing to do");
    }
    // A dry run changed no balloon: there is nothing of memtide's to give back, and a restore
    // would resize guests an operator only meant to watch. memtided marks a dry run given by
    // --dry-run too, which the configuration does not show.
    const auto marker = dry_run_marker_path();
    struct stat st {};
    if (config.daemon.dry_run || (marker && ::lstat(marker->c_str(), &st) == 0)) {
      return nothing(std::string("memtided ended (") + result +
                     "); it ran in dry run, so it changed nothing: nothing to restore");
    }
    if (!json) {
      std::cout << "memtided ended without restoring (" << result << "); restoring\n";
    }
  }
  // Balloons another manager resizes are not memtide's to restore (daemon.coexist). A memtided
  // still running is not such a manager here: a restore by hand is meant to override it.
  auto others = collectors::find_other_managers(config.daemon.procfs, static_cast<int>(getpid()));
  std::erase_if(others, [](const OtherManager& m) { return m.name == "memtided"; });
  if (const auto owner = policy::yielding_to(others, policy::Controls::balloons, config);
      !owner.empty()) {
    return nothing("balloons are left to " + owner + " (daemon.coexist: auto): nothing restored");
  }
  if (config.daemon.dry_run && !dry_run && !json) {
    std::cout << "daemon.dry_run is on in the configuration: nothing is changed; what a restore "
                 "would do:\n";
  }
  auto worker = collectors::make_libvirt_worker(config);
  // Each VM is printed as soon as it is done: a restore can take up to a minute.
  const auto run = actuators::restore_within(
      *worker, config, dry_run || config.daemon.dry_run, config.libvirt.timeout,
      std::chrono::steady_clock::now() + actuators::kRestoreBudget, nullptr,
      [json](const actuators::RestoreOutcome& outcome) {
        if (!json) {
          std::cout << for_terminal(actuators::describe(outcome)) << std::endl;
        }
      });
  if (run.collect_error) {
    std::cerr << "memtidectl: " << run.collect_error->message << '\n';
    return kExitFailure;
  }
  int failures = 0;
  for (const auto& outcome : run.outcomes) {
    failures += outcome.kind == actuators::RestoreOutcome::Kind::failed ? 1 : 0;
  }
  if (json) {
    print_json(std::nullopt, run.outcomes);
  }
  return failures == 0 ? kExitOk : kExitFailure;
}

}  // namespace memtide::ctl

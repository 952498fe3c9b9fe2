// Giving managed VMs their maximum memory back (virtio-mem devices their configured size,
// restore_size): what memtided does on stop (daemon.on_stop: restore) and what
// `memtidectl restore` does by hand.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <memtide/collectors/hypervisor_worker.hpp>
#include <memtide/config/config.hpp>
#include <memtide/core/vm_sample.hpp>

namespace memtide::actuators {

struct RestoreOutcome {
  std::string vm;
  std::string uuid;
  std::string connection;  // VmSample::connection
  enum class Kind { restored, already_at_maximum, unmanaged, failed, dry_run } kind;
  std::uint64_t from_bytes = 0;
  std::uint64_t to_bytes = 0;
  std::string detail;  // the reason for unmanaged/failed
};

// For every VM in `vms`: a managed VM away from its restore_size gets it (or, with `dry_run`, is
// only reported); unmanaged VMs are left alone and reported with the reason. One VM's failure does
// not stop the others.
std::vector<RestoreOutcome> restore_balloons(collectors::HypervisorWorker& hypervisor,
                                             const std::vector<VmSample>& vms,
                                             const config::Config& config, bool dry_run,
                                             std::chrono::milliseconds timeout);

// How long a restore may take in all: below the unit's TimeoutStopSec (90 s), so systemd does
// not kill memtided in the middle of it.
inline constexpr std::chrono::seconds kRestoreBudget{60};

struct RestoreRun {
  std::optional<Error> collect_error;  // the VMs could not be listed before the deadline
  std::vector<RestoreOutcome> outcomes;
  int attempts = 0;  // set_memory_size calls made, retries included
};

// restore_balloons made robust for a stop: waits for a call already in flight (a tick's call to
// a slow libvirt) instead of failing "busy", lists the VMs afresh, then gives each VM its own
// `call_timeout`; the listing and each VM get up to 3 tries, all within `deadline` (steady
// clock).
// `progress` is called between calls (memtided pings the watchdog and updates its status), and
// `done` with each VM's outcome as soon as it is final, before the next VM is tried (memtidectl
// prints it: a whole restore can take up to kRestoreBudget).
RestoreRun restore_within(collectors::HypervisorWorker& hypervisor, const config::Config& config,
                          bool dry_run, std::chrono::milliseconds call_timeout,
                          std::chrono::steady_clock::time_point deadline,
                          const std::function<void(const std::string&)>& progress = nullptr,
                          const std::function<void(const RestoreOutcome&)>& done = nullptr);

// "web-1: 1 GiB -> 4 GiB" and the like.
std::string describe(const RestoreOutcome& outcome);

}  // namespace memtide::actuators

// Giving managed VMs their maximum memory back: what memtided does on stop (daemon.on_stop:
// restore) and what `memtidectl restore` does by hand.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <memtide/config/config.hpp>
#include <memtide/core/vm_sample.hpp>

#include "hypervisor_worker.hpp"

namespace memtide::daemon {

struct RestoreOutcome {
  std::string vm;
  std::string uuid;
  enum class Kind { restored, already_at_maximum, unmanaged, failed, dry_run } kind;
  std::uint64_t from_bytes = 0;
  std::uint64_t to_bytes = 0;
  std::string detail;  // the reason for unmanaged/failed
};

// For every VM in `vms`: a managed VM below its maximum gets it (or, with `dry_run`, is only
// reported); unmanaged VMs are left alone and reported with the reason. One VM's failure does
// not stop the others.
std::vector<RestoreOutcome> restore_balloons(HypervisorWorker& hypervisor,
                                             const std::vector<VmSample>& vms,
                                             const config::Config& config, bool dry_run,
                                             std::chrono::milliseconds timeout);

// "web-1: 1 GiB -> 4 GiB" and the like.
std::string describe(const RestoreOutcome& outcome);

}  // namespace memtide::daemon

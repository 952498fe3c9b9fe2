// One collection pass: the host's procfs/sysfs figures stamped with both clocks.
#pragma once

#include <memtide/collectors/host_source.hpp>
#include <memtide/core/result.hpp>
#include <memtide/core/snapshot.hpp>

namespace memtide::daemon {

// Reads host memory state and KSM. Fails when a required file (meminfo, vmstat, an existing KSM
// file) cannot be read or parsed; optional sources that are absent are left unset.
Result<Snapshot> collect_snapshot(const collectors::HostSource& host,
                                  const collectors::KsmControl& ksm);

}  // namespace memtide::daemon

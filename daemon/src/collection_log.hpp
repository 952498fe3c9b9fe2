// What a collection tells the operator, said once rather than every tick: a failing collection
// and its recovery, libvirt going down and coming back, a process claiming a VM that is not
// proven to be its QEMU, invalid per-VM metadata (once per domain and content), and per-VM
// settings that changed on a running VM (virsh metadata --live), and what memtide leaves to other
// memory managers on the host.
#pragma once

#include <map>
#include <string>

#include <memtide/core/snapshot.hpp>

#include "log.hpp"
#include "log_on_change.hpp"

namespace memtide::daemon {

class CollectionLog {
 public:
  explicit CollectionLog(Logger& log) : log_(log) {}

  void failed(const std::string& error);
  void collected(const Snapshot& snapshot);
  // What memtide leaves to other memory managers (policy::yield_summary; "" for nothing), logged
  // when it changes; `squatted_uris` (", "-joined) are set while a process that is not memtided
  // holds the claim on those libvirt URIs (HypervisorClaim), which memtide ignores.
  void other_managers(const std::string& yielded, const std::string& squatted_uris);
  // The collection failure in force ("" while collections work), for the service status.
  const std::string& failing() const { return collect_error_.current(); }

 private:
  void log_process_claims(const Snapshot& snapshot);
  void log_metadata_errors(const Snapshot& snapshot);
  void log_metadata_changes(const Snapshot& snapshot);
  // With several libvirt daemons: each connection going up or down, and each socket refused,
  // on the transition.
  void log_connections(const Snapshot& snapshot);

  Logger& log_;
  LogOnChange collect_error_;
  LogOnChange hypervisor_error_;
  LogOnChange yielded_;
  LogOnChange squatted_;
  std::map<std::string, std::string> connections_;      // name -> "status: error" logged
  std::map<std::string, std::string> metadata_errors_;  // uuid -> errors logged
  std::map<std::string, std::string> process_claims_;   // uuid -> reason logged
  std::map<std::string, VmMetadata> metadata_;          // uuid -> settings last seen
};

}  // namespace memtide::daemon

#include "collection_log.hpp"

namespace memtide::daemon {

void CollectionLog::failed(const std::string& message) {
  if (collect_error_.failed(message)) {
    log_.error("collection failed; keeping the last good snapshot: " + message,
               {{"MEMTIDE_EVENT", "collect-failed"}});
  }
}

void CollectionLog::collected(const Snapshot& snapshot) {
  if (collect_error_.recovered()) {
    log_.notice("collection works again", {{"MEMTIDE_EVENT", "collect-recovered"}});
  }
  // libvirt going away and coming back is logged on the transition, not every tick.
  if (!snapshot.hypervisor_up) {
    const bool first = hypervisor_error_.current().empty();
    if (hypervisor_error_.failed(snapshot.hypervisor_error)) {
      log_.log(first ? Priority::err : Priority::debug,
               std::string(first ? "libvirt unavailable: " : "libvirt still unavailable: ") +
                   snapshot.hypervisor_error,
               {{"MEMTIDE_EVENT", "libvirt-down"}});
    }
  } else if (hypervisor_error_.recovered()) {
    log_.notice("libvirt connection established", {{"MEMTIDE_EVENT", "libvirt-up"}});
  }
  log_process_claims(snapshot);
  log_metadata_errors(snapshot);
}

void CollectionLog::log_process_claims(const Snapshot& snapshot) {
  std::map<std::string, std::string> claims;
  for (const auto& vm : snapshot.vms) {
    if (!vm.process_unavailable) {
      continue;
    }
    if (process_claims_[vm.uuid] != *vm.process_unavailable) {
      log_.warning("domain '" + vm.name + "': host figures unavailable: " + *vm.process_unavailable,
                   {{"MEMTIDE_EVENT", "vm-process-untrusted"},
                    {"MEMTIDE_VM", vm.name},
                    {"MEMTIDE_VM_UUID", vm.uuid}});
    }
    claims[vm.uuid] = *vm.process_unavailable;
  }
  if (snapshot.hypervisor_up) {
    process_claims_ = std::move(claims);
  }
}

void CollectionLog::log_metadata_errors(const Snapshot& snapshot) {
  std::map<std::string, std::string> seen;
  for (const auto& vm : snapshot.vms) {
    if (vm.metadata_errors.empty()) {
      continue;
    }
    std::string all;
    for (const auto& e : vm.metadata_errors) {
      all += (all.empty() ? "" : "; ") + e;
    }
    if (metadata_errors_[vm.uuid] != all) {
      log_.warning("domain '" + vm.name + "': invalid memtide metadata ignored: " + all,
                   {{"MEMTIDE_EVENT", "vm-metadata-invalid"},
                    {"MEMTIDE_VM", vm.name},
                    {"MEMTIDE_VM_UUID", vm.uuid}});
    }
    seen[vm.uuid] = all;
  }
  if (snapshot.hypervisor_up) {
    metadata_errors_ = std::move(seen);
  }
}

}  // namespace memtide::daemon

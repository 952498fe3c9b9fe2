#include "collection_log.hpp"

#include <memtide/config/units.hpp>

namespace memtide::daemon {

namespace {

// "class batch, floor 2 GiB, shares 2000" for the settings a VM's metadata gives.
std::string describe(const VmMetadata& m) {
  std::string out;
  auto add = [&out](const std::string& part) { out += (out.empty() ? "" : ", ") + part; };
  if (m.class_name) {
    add("class " + *m.class_name);
  }
  if (m.floor) {
    add("floor " + (m.floor->is_ratio()
                        ? std::to_string(static_cast<int>(std::get<1>(m.floor->value) * 100)) + "%"
                        : config::format_size(std::get<0>(m.floor->value))));
  }
  if (m.shares) {
    add("shares " + std::to_string(*m.shares));
  }
  if (m.balloon_enabled) {
    add(std::string("balloon ") + (*m.balloon_enabled ? "on" : "off"));
  }
  if (m.scan_enabled) {
    add(std::string("scan ") + (*m.scan_enabled ? "on" : "off"));
  }
  return out.empty() ? "none (the class settings apply)" : out;
}

}  // namespace

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
  log_connections(snapshot);
  log_process_claims(snapshot);
  log_metadata_errors(snapshot);
  log_metadata_changes(snapshot);
}

void CollectionLog::other_managers(const std::string& yielded, const std::string& squatted_uris) {
  if (yielded.empty()) {
    if (yielded_.recovered()) {
      log_.notice("no other memory manager runs any more: memtide manages balloons and KSM again",
                  {{"MEMTIDE_EVENT", "other-manager-gone"}});
    }
  } else if (yielded_.failed(yielded)) {
    log_.warning(yielded + " (daemon.coexist: force makes memtide act anyway)",
                 {{"MEMTIDE_EVENT", "other-manager"}});
  }
  if (squatted_uris.empty()) {
    squatted_.recovered();
  } else if (squatted_.failed(squatted_uris)) {
    const bool several = squatted_uris.find(", ") != std::string::npos;
    log_.warning((several ? "the claims on libvirt URIs " : "the claim on libvirt URI ") +
                     squatted_uris + (several ? " are" : " is") +
                     " held by a process that is not memtided; ignored",
                 {{"MEMTIDE_EVENT", "hypervisor-claim-squatted"}});
  }
}

void CollectionLog::log_connections(const Snapshot& snapshot) {
  using Status = ConnectionState::Status;
  std::map<std::string, std::string> now;
  for (const auto& c : snapshot.connections) {
    const std::string said = std::string(to_string(c.status)) + ": " + c.error;
    now[c.name] = said;
    const auto last = connections_.find(c.name);
    if (last != connections_.end() && last->second == said) {
      continue;
    }
    const std::initializer_list<LogField> fields = {
        {"MEMTIDE_EVENT", c.status == Status::up     ? "libvirt-connection-up"
                          : c.status == Status::down ? "libvirt-connection-down"
                                                     : "libvirt-socket-refused"},
        {"MEMTIDE_CONNECTION", c.name}};
    const std::string what = "libvirt connection " + c.name + " (" + c.uri + ")";
    if (c.status == Status::up) {
      log_.notice(what + " up, " + std::to_string(c.vms) + " guests", fields);
    } else if (c.status == Status::down) {
      // A daemon still down with another error is logged at debug level, as libvirt-down is.
      const bool was_down = last != connections_.end() && last->second.rfind("down:", 0) == 0;
      log_.log(was_down ? Priority::debug : Priority::err,
               what + " down, its guests are not managed: " + c.error, fields);
    } else {
      log_.warning("libvirt socket " + c.uri + " not used (" + c.name + "): " + c.error, fields);
    }
  }
  connections_ = std::move(now);
}

void CollectionLog::log_process_claims(const Snapshot& snapshot) {
  std::map<std::string, std::string> claims;
  for (const auto& vm : snapshot.vms) {
    if (!vm.process_unavailable) {
      continue;
    }
    if (process_claims_[vm.key()] != *vm.process_unavailable) {
      log_.warning("domain '" + vm.name + "': host figures unavailable: " + *vm.process_unavailable,
                   {{"MEMTIDE_EVENT", "vm-process-untrusted"},
                    {"MEMTIDE_DOMAIN", vm.name},
                    {"MEMTIDE_DOMAIN_UUID", vm.uuid}});
    }
    claims[vm.key()] = *vm.process_unavailable;
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
    if (metadata_errors_[vm.key()] != all) {
      log_.warning("domain '" + vm.name + "': invalid memtide metadata ignored: " + all,
                   {{"MEMTIDE_EVENT", "vm-metadata-invalid"},
                    {"MEMTIDE_DOMAIN", vm.name},
                    {"MEMTIDE_DOMAIN_UUID", vm.uuid}});
    }
    seen[vm.key()] = all;
  }
  if (snapshot.hypervisor_up) {
    metadata_errors_ = std::move(seen);
  }
}

void CollectionLog::log_metadata_changes(const Snapshot& snapshot) {
  if (!snapshot.hypervisor_up) {
    return;  // the VM list is the last good one
  }
  std::map<std::string, VmMetadata> now;
  for (const auto& vm : snapshot.vms) {
    const auto it = metadata_.find(vm.key());
    if (it != metadata_.end() && it->second != vm.metadata) {
      log_.notice("domain '" + vm.name + "': memtide settings changed from " +
                      describe(it->second) + " to " + describe(vm.metadata),
                  {{"MEMTIDE_EVENT", "vm-metadata-changed"},
                   {"MEMTIDE_DOMAIN", vm.name},
                   {"MEMTIDE_DOMAIN_UUID", vm.uuid}});
    }
    now.emplace(vm.key(), vm.metadata);
  }
  metadata_ = std::move(now);
}

}  // namespace memtide::daemon

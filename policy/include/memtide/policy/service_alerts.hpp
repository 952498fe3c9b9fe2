// Alert transitions, and the alerts about memtide's own ability to act, beside decide()'s alerts
// about the host and the guests: libvirt unreachable, and balloon commands that libvirt refused.
// Pure, like decide(): the daemon feeds each tick's facts in and gets the alerts firing back.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <memtide/policy/engine.hpp>

namespace memtide::policy {

class ServiceAlerts {
 public:
  // `hypervisor_up`/`hypervisor_error` from this tick's snapshot; `failed`: VM name -> why its
  // balloon command failed this tick. Returns `plan_alerts` with the service alerts added, sorted
  // by (name, subject):
  // - libvirt-down (critical) from the second tick in a row without libvirt (one failed
  //   collection may be a restart in progress), with the time of the first;
  // - libvirt-connection-down (warning) while, with several libvirt daemons, one or more
  //   connections have been down for two ticks in a row (`connections`: the snapshot's), naming
  //   them, with the time the first of them went down;
  // - balloon-command-failed (warning) per VM, until kAlertClearTicks ticks without a failure.
  std::vector<Alert> update(std::vector<Alert> plan_alerts, bool hypervisor_up,
                            const std::string& hypervisor_error,
                            const std::vector<ConnectionState>& connections,
                            const std::map<std::string, std::string>& failed, std::int64_t now_ms);

 private:
  std::int64_t libvirt_down_since_ms_ = -1;                        // monotonic ms; -1 while up
  std::map<std::string, std::int64_t> connections_down_since_ms_;  // by connection name
  // VMs whose last balloon command failed -> (message, consecutive ticks without a failure).
  std::map<std::string, std::pair<std::string, int>> failing_vms_;
};

// How the alerts firing changed from one tick to the next.
struct AlertChanges {
  std::vector<Alert> fired;     // in `after` but not in `before`
  std::vector<Alert> resolved;  // in `before` but not in `after`
};

// The transitions from `before` to `after`, both sorted by (name, subject) as decide() and
// ServiceAlerts::update return them; an alert is the same alert when name and subject match.
AlertChanges alert_changes(const std::vector<Alert>& before, const std::vector<Alert>& after);

}  // namespace memtide::policy

// The control protocol's answers to `status` and `explain` (memtidectl status / explain): the
// daemon, host, KSM, alerts, every VM with why it was or was not resized, and the last balloon
// commands. Figures keep their units (bytes, seconds, ratios); times are UTC ISO 8601.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include <memtide/report/tick_report.hpp>

namespace memtide::report {

// The reply to "status": {"ok": true, "daemon", "host", "ksm", "alerts", "vms",
// "recent_commands"}, or {"ok": false, "error"} before the first collection.
nlohmann::json status_reply(const TickReport& report);

// The reply to "explain" for the running VM named `vm` (a name or a UUID): {"ok": true, "vm",
// "host"}, or {"ok": false, "error"}.
nlohmann::json explain_reply(const TickReport& report, const std::string& vm);

// The one-line status systemd shows (STATUS=, `systemctl status memtided`): tick, interval, host
// memory, VMs or libvirt down, the policy's summary, the swap forecast, alerts, and the modes and
// failures an operator must know of (dry run, paused, collection failing, reload refused).
std::string service_status(const TickReport& report);

}  // namespace memtide::report

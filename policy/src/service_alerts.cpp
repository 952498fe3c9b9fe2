#include <algorithm>
#include <iterator>
#include <tuple>

#include <memtide/policy/service_alerts.hpp>

namespace memtide::policy {

std::vector<Alert> ServiceAlerts::update(std::vector<Alert> alerts, bool hypervisor_up,
                                         const std::string& hypervisor_error,
                                         const std::vector<ConnectionState>& connections,
                                         const std::map<std::string, std::string>& failed,
                                         std::int64_t now_ms) {
  if (hypervisor_up) {
    libvirt_down_since_ms_ = -1;
  } else if (libvirt_down_since_ms_ < 0) {
    libvirt_down_since_ms_ = now_ms;
  } else {
    alerts.push_back({"libvirt-down", "", Severity::critical,
                      "libvirt unreachable, guests are not managed: " + hypervisor_error,
                      libvirt_down_since_ms_});
  }
  std::map<std::string, std::int64_t> down;
  std::string named;
  std::int64_t first_down_ms = now_ms;
  for (const auto& c : connections) {
    if (c.status != ConnectionState::Status::down) {
      continue;
    }
    const auto it = connections_down_since_ms_.find(c.name);
    const auto since = it != connections_down_since_ms_.end() ? it->second : now_ms;
    down.emplace(c.name, since);
    if (it != connections_down_since_ms_.end()) {
      named += (named.empty() ? "" : "; ") + c.name + " (" + c.error + ")";
      first_down_ms = std::min(first_down_ms, since);
    }
  }
  connections_down_since_ms_ = std::move(down);
  if (!named.empty()) {
    alerts.push_back({"libvirt-connection-down", "", Severity::warning,
                      "libvirt connections down, their guests are not managed: " + named,
                      first_down_ms});
  }
  for (const auto& [vm, message] : failed) {
    failing_vms_[vm] = {message, 0};
  }
  for (auto it = failing_vms_.begin(); it != failing_vms_.end();) {
    if (failed.count(it->first) == 0 && ++it->second.second >= kAlertClearTicks) {
      it = failing_vms_.erase(it);
      continue;
    }
    alerts.push_back({"balloon-command-failed", it->first, Severity::warning,
                      it->first + ": balloon command failed: " + it->second.first, now_ms});
    ++it;
  }
  std::sort(alerts.begin(), alerts.end(), [](const Alert& a, const Alert& b) {
    return std::tie(a.name, a.subject) < std::tie(b.name, b.subject);
  });
  return alerts;
}

std::string alertname(std::string_view name) {
  std::string out = "Memtide";
  bool word_start = true;
  for (const char c : name) {
    if (c == '-') {
      word_start = true;
      continue;
    }
    out += word_start && c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
    word_start = false;
  }
  return out;
}

AlertChanges alert_changes(const std::vector<Alert>& before, const std::vector<Alert>& after) {
  auto key = [](const Alert& a) { return std::tie(a.name, a.subject); };
  auto less = [&key](const Alert& a, const Alert& b) { return key(a) < key(b); };
  AlertChanges changes;
  std::set_difference(after.begin(), after.end(), before.begin(), before.end(),
                      std::back_inserter(changes.fired), less);
  std::set_difference(before.begin(), before.end(), after.begin(), after.end(),
                      std::back_inserter(changes.resolved), less);
  return changes;
}

}  // namespace memtide::policy

#include <memtide/report/tick_report.hpp>

namespace memtide::report {

const std::vector<policy::Alert>& firing_alerts(const TickReport& report) {
  static const std::vector<policy::Alert> kNone;
  if (report.alerts != nullptr) {
    return *report.alerts;
  }
  return report.plan != nullptr ? report.plan->alerts : kNone;
}

const policy::Outcome* outcome_of(const TickReport& report, std::size_t index) {
  // Outcomes are in the snapshot's VM order when the plan covered the VMs.
  if (report.plan == nullptr || report.snapshot == nullptr ||
      report.plan->outcomes.size() != report.snapshot->vms.size() ||
      index >= report.plan->outcomes.size()) {
    return nullptr;
  }
  return &report.plan->outcomes[index];
}

std::optional<std::uint64_t> balloon_target_of(const TickReport& report, const std::string& key) {
  if (report.state == nullptr) {
    return std::nullopt;
  }
  const auto it = report.state->vms.find(key);
  return it != report.state->vms.end() ? it->second.last_target_bytes : std::nullopt;
}

std::optional<std::uint64_t> balloon_target_of(const TickReport& report, const VmSample& vm) {
  return report.state == nullptr ? std::nullopt : balloon_target_of(report, vm.key());
}

}  // namespace memtide::report

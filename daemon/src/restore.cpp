#include "restore.hpp"

#include <memtide/config/units.hpp>
#include <memtide/policy/classes.hpp>

namespace memtide::daemon {

std::vector<RestoreOutcome> restore_balloons(HypervisorWorker& hypervisor,
                                             const std::vector<VmSample>& vms,
                                             const config::Config& config, bool dry_run,
                                             std::chrono::milliseconds timeout) {
  std::vector<RestoreOutcome> outcomes;
  for (const auto& vm : vms) {
    RestoreOutcome o{vm.name,          vm.uuid,      RestoreOutcome::Kind::restored,
                     vm.current_bytes, vm.max_bytes, ""};
    const auto settings = policy::effective_balloon(vm, config);
    if (!settings.managed) {
      o.kind = RestoreOutcome::Kind::unmanaged;
      o.detail = settings.unmanaged_reason;
    } else if (vm.current_bytes >= vm.max_bytes) {
      o.kind = RestoreOutcome::Kind::already_at_maximum;
    } else if (dry_run) {
      o.kind = RestoreOutcome::Kind::dry_run;
    } else if (auto set =
                   hypervisor.set_balloon(vm.uuid, vm.max_bytes, settings.floor_bytes, timeout)) {
      o.to_bytes = *set;
    } else {
      o.kind = RestoreOutcome::Kind::failed;
      o.detail = set.error().message;
    }
    outcomes.push_back(std::move(o));
  }
  return outcomes;
}

std::string describe(const RestoreOutcome& o) {
  using config::format_size;
  switch (o.kind) {
    case RestoreOutcome::Kind::restored:
      return o.vm + ": " + format_size(o.from_bytes) + " -> " + format_size(o.to_bytes);
    case RestoreOutcome::Kind::dry_run:
      return o.vm + ": would go " + format_size(o.from_bytes) + " -> " + format_size(o.to_bytes);
    case RestoreOutcome::Kind::already_at_maximum:
      return o.vm + ": already at its maximum (" + format_size(o.to_bytes) + ")";
    case RestoreOutcome::Kind::unmanaged:
      return o.vm + ": left alone (" + o.detail + ")";
    case RestoreOutcome::Kind::failed:
      return o.vm + ": FAILED: " + o.detail;
  }
  return o.vm;
}

}  // namespace memtide::daemon

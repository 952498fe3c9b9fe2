#include <unistd.h>

#include <memtide/collectors/collect.hpp>
#include <memtide/collectors/libvirt_hypervisor.hpp>
#include <memtide/collectors/other_managers.hpp>
#include <memtide/core/clock.hpp>

namespace memtide::collectors {

std::unique_ptr<HypervisorWorker> make_libvirt_worker(const config::Config& config) {
  collectors::LibvirtOptions o;
  o.uri = config.libvirt.uri;
  o.keepalive_interval =
      std::chrono::duration_cast<std::chrono::seconds>(config.libvirt.keepalive_interval);
  o.keepalive_count = config.libvirt.keepalive_count;
  o.reconnect_max_backoff = config.libvirt.reconnect_max_backoff;
  o.relist_interval = config.libvirt.relist_interval;
  o.stats_period_s = static_cast<std::uint32_t>(config.libvirt.stats_period.count());
  o.procfs = config.daemon.procfs;
  o.page_size_bytes = collectors::system_page_size();
  return std::make_unique<HypervisorWorker>(
      std::make_unique<collectors::LibvirtHypervisor>(std::move(o)));
}

Collector::Collector(collectors::HostRoots roots, std::unique_ptr<HypervisorWorker> hypervisor,
                     std::chrono::milliseconds hypervisor_timeout)
    : hypervisor_(std::move(hypervisor)), hypervisor_timeout_(hypervisor_timeout) {
  set_roots(std::move(roots));
}

void Collector::set_roots(collectors::HostRoots roots) {
  ksm_ = std::make_unique<collectors::KsmReader>(roots.sysfs);
  ksmd_cpu_ = std::make_unique<collectors::KsmdCpu>(roots.procfs);
  procfs_ = roots.procfs;
  host_ = std::make_unique<collectors::HostSource>(std::move(roots));
}

Result<Snapshot> Collector::collect() {
  Snapshot snapshot;
  snapshot.monotonic_ms = clock::monotonic_ms();
  snapshot.collected_at_unix_ms = clock::unix_ms();
  auto host_sample = host_->read();
  if (!host_sample) {
    return host_sample.error();
  }
  snapshot.host = std::move(*host_sample);
  auto ksm_sample = ksm_->read();
  if (!ksm_sample) {
    return ksm_sample.error();
  }
  snapshot.ksm = std::move(*ksm_sample);
  if (snapshot.ksm) {
    snapshot.ksm->ksmd_cpu_seconds_total = ksmd_cpu_->read();
  }
  snapshot.other_managers = find_other_managers(procfs_, static_cast<int>(getpid()));

  if (hypervisor_) {
    auto vms = hypervisor_->collect(snapshot.monotonic_ms, hypervisor_timeout_);
    if (vms) {
      last_vms_ = std::move(*vms);
      snapshot.hypervisor_up = true;
    } else {
      snapshot.hypervisor_error = vms.error().message;
    }
    snapshot.vms = last_vms_;
  } else {
    snapshot.hypervisor_error = "no hypervisor configured";
  }
  return snapshot;
}

}  // namespace memtide::collectors

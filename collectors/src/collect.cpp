#include <algorithm>
#include <array>

#include <unistd.h>

#include <memtide/collectors/collect.hpp>
#include <memtide/collectors/connection_set.hpp>
#include <memtide/collectors/libvirt_hypervisor.hpp>
#include <memtide/core/clock.hpp>
#include <memtide/core/reserve.hpp>

namespace memtide::collectors {

std::unique_ptr<HypervisorWorker> make_libvirt_worker(const config::Config& config, bool daemon) {
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
  o.record_boot_sizes = daemon && !config.daemon.dry_run;
  const auto& libvirt = config.libvirt;
  if (libvirt.connections.empty() && libvirt.discover.empty()) {
    return std::make_unique<HypervisorWorker>(
        std::make_unique<collectors::LibvirtHypervisor>(std::move(o)));
  }
  ConnectionSetOptions set;
  set.base = std::move(o);
  set.connections = libvirt.connections;
  set.discover = libvirt.discover;
  set.max_connections = libvirt.max_connections;
  set.discover_interval = libvirt.discover_interval;
  // A fifth of the caller's timeout is left for the set's own work (discovery, merging).
  set.budget = libvirt.timeout * 4 / 5;
  return std::make_unique<HypervisorWorker>(std::make_unique<ConnectionSet>(std::move(set)));
}

Collector::Collector(collectors::HostRoots roots, std::unique_ptr<HypervisorWorker> hypervisor,
                     std::chrono::milliseconds hypervisor_timeout)
    : hypervisor_(std::move(hypervisor)), hypervisor_timeout_(hypervisor_timeout) {
  set_roots(std::move(roots));
}

void Collector::set_roots(collectors::HostRoots roots) {
  ksm_ = std::make_unique<collectors::KsmReader>(roots.sysfs);
  ksmd_cpu_ = std::make_unique<collectors::KsmdCpu>(roots.procfs);
  managers_ = std::make_unique<OtherManagerFinder>(roots.procfs, static_cast<int>(getpid()));
  host_ = std::make_unique<collectors::HostSource>(std::move(roots));
}

ProcessReadHints Collector::read_hints(const Snapshot& snapshot) {
  const auto& mem = snapshot.host.meminfo;
  const auto& vmstat = snapshot.host.vmstat;
  ProcessReadHints hints;
  hints.swap_in_use = mem.swap_total_bytes > mem.swap_free_bytes;
  const std::array<std::uint64_t, 3> swap{
      vmstat.swap_in_bytes_total, vmstat.swap_out_bytes_total,
      mem.swap_total_bytes - std::min(mem.swap_free_bytes, mem.swap_total_bytes)};
  if (swap != last_swap_) {
    last_swap_ = swap;
    ++swap_epoch_;
  }
  hints.swap_epoch = swap_epoch_;
  // Without KSM in the kernel there is no ksm_stat to read again: one read finds it absent.
  if (snapshot.ksm) {
    const auto& k = *snapshot.ksm;
    const std::array<std::uint64_t, 5> ksm{k.run, k.shared_bytes, k.sharing_bytes,
                                           k.zero_pages_bytes.value_or(0), k.full_scans_total};
    if (ksm != last_ksm_) {
      last_ksm_ = ksm;
      ++ksm_epoch_;
    }
    if (k.shared_bytes == 0 && k.sharing_bytes == 0 && k.zero_pages_bytes.value_or(0) == 0 &&
        k.general_profit_bytes == 0) {
      hints.ksm_all_zero = empty_process_ksm_stat(k);
    }
  }
  hints.ksm_epoch = ksm_epoch_;
  hints.host_near_reserve =
      !host_reserve_bytes_ || host_near_reserve(mem.available_bytes, *host_reserve_bytes_);
  return hints;
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
  snapshot.other_managers = managers_->find(snapshot.monotonic_ms);

  if (hypervisor_) {
    auto vms =
        hypervisor_->collect(snapshot.monotonic_ms, hypervisor_timeout_, read_hints(snapshot));
    if (vms) {
      snapshot.vms = std::move(*vms);
      snapshot.hypervisor_up = true;
    } else {
      snapshot.hypervisor_error = vms.error().message;
    }
    snapshot.connections = hypervisor_->connection_states();
  } else {
    snapshot.hypervisor_error = "no hypervisor configured";
  }
  return snapshot;
}

}  // namespace memtide::collectors

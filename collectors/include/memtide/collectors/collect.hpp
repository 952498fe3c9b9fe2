// One collection pass: host figures from procfs/sysfs and VM figures from the hypervisor,
// stamped with both clocks.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <memtide/collectors/host_source.hpp>
#include <memtide/collectors/hypervisor_worker.hpp>
#include <memtide/collectors/other_managers.hpp>
#include <memtide/config/config.hpp>
#include <memtide/core/result.hpp>
#include <memtide/core/snapshot.hpp>

namespace memtide::collectors {

// The libvirt hypervisor for `config` (libvirt.uri, or libvirt.connections and
// libvirt.discover through a ConnectionSet; its timeouts, and daemon.procfs to find the QEMU
// processes).
// `daemon`: memtided's connection, which records transient domains' virtio-mem boot sizes
// (LibvirtOptions::record_boot_sizes) unless the configuration is a dry run; a client's records
// nothing.
std::unique_ptr<HypervisorWorker> make_libvirt_worker(const config::Config& config,
                                                      bool daemon = false);

class Collector {
 public:
  // `hypervisor` may be null (no VM figures, e.g. in tests of the host side alone).
  Collector(collectors::HostRoots roots, std::unique_ptr<HypervisorWorker> hypervisor,
            std::chrono::milliseconds hypervisor_timeout);

  // Fails when a required host file (meminfo, vmstat, an existing KSM file) cannot be read or
  // parsed. Every other memory manager running is listed (OtherManagerFinder), a second
  // memtided included: whether it manages the same hypervisor is the daemon's to judge. A
  // hypervisor that is down or too slow does not fail the collection: the snapshot says so
  // (hypervisor_up, hypervisor_error) and has no VMs (the caller keeps its last good ones: the
  // collector holds no copy of them).
  Result<Snapshot> collect();

  void set_roots(collectors::HostRoots roots);
  void set_hypervisor_timeout(std::chrono::milliseconds t) { hypervisor_timeout_ = t; }
  // The host's reserve (host.reserve), for ProcessReadHints::host_near_reserve; unknown until
  // set, and then the host counts as near it.
  void set_host_reserve(std::uint64_t bytes) { host_reserve_bytes_ = bytes; }
  HypervisorWorker* hypervisor() { return hypervisor_.get(); }

 private:
  // What the host figures just read say about the QEMU processes' files (ProcessReadHints): an
  // epoch advances when swap traffic or use moved, another while KSM runs or its counts moved;
  // and whether MemAvailable is near the reserve.
  ProcessReadHints read_hints(const Snapshot& snapshot);

  std::unique_ptr<OtherManagerFinder> managers_;
  std::unique_ptr<collectors::HostSource> host_;
  std::unique_ptr<collectors::KsmReader> ksm_;
  std::unique_ptr<collectors::KsmdCpu> ksmd_cpu_;
  std::unique_ptr<HypervisorWorker> hypervisor_;
  std::chrono::milliseconds hypervisor_timeout_;
  std::optional<std::uint64_t> host_reserve_bytes_;
  std::array<std::uint64_t, 3> last_swap_{};
  std::uint64_t swap_epoch_ = 0;
  std::array<std::uint64_t, 5> last_ksm_{};
  std::uint64_t ksm_epoch_ = 0;
};

}  // namespace memtide::collectors

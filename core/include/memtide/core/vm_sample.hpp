// One guest as seen in one tick: libvirt's view (state, balloon size, the guest's own memory
// statistics through the virtio balloon), the operator's per-VM settings from the domain XML
// metadata, and the host's view of its QEMU process. Memory in bytes throughout.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <memtide/core/page_scan.hpp>
#include <memtide/core/size_or_ratio.hpp>

namespace memtide {

enum class VmState { running, paused, shutoff, crashed, other };

// Whether the guest's own memory statistics (balloon.usable etc.) can be trusted this tick.
enum class GuestStatsStatus {
  ok,          // present and updated recently
  disabled,    // the balloon's statistics period is 0: QEMU does not poll the guest
  no_driver,   // period set but the guest never reported: no virtio_balloon driver (yet)
  stale,       // reported once, but last-update has not advanced for several periods
  no_balloon,  // the domain has no balloon device at all: memtide cannot resize it
};

// The guest's statistics as reported through the balloon (virDomainMemoryStats tags).
struct GuestMemory {
  std::optional<std::uint64_t> total_bytes;        // "available": MemTotal inside the guest
  std::optional<std::uint64_t> usable_bytes;       // MemAvailable-like: free + reclaimable
  std::optional<std::uint64_t> unused_bytes;       // MemFree (page cache counts as used)
  std::optional<std::uint64_t> disk_caches_bytes;  // page cache the guest can drop
  std::optional<std::uint64_t> swap_in_bytes_total;
  std::optional<std::uint64_t> swap_out_bytes_total;
  std::optional<std::uint64_t> major_faults_total;
  std::optional<std::uint64_t> minor_faults_total;
  std::optional<std::int64_t> last_update_unix_s;  // when QEMU last got figures from the guest
  friend bool operator==(const GuestMemory&, const GuestMemory&) = default;
};

// Why a balloon frees no host memory for a guest: the host holds all of the guest's RAM whatever
// the balloon's size, so shrinking it only takes memory from the guest.
enum class MemoryPin : std::uint8_t {
  hugepages,        // <memoryBacking><hugepages/>: hugetlbfs pages are never discarded
  locked,           // <memoryBacking><locked/>: the RAM is mlock'ed
  hostdev,          // a passed-through VFIO/mdev device (<hostdev>, <interface type='hostdev'>)
                    // pins all RAM for DMA; QEMU turns balloon discards off
  preallocated,     // <memoryBacking><allocation mode='immediate'/>: reserved up front
  launch_security,  // <launchSecurity> (SEV, SEV-SNP, TDX, s390 PV): encrypted RAM, no discards
};
inline constexpr MemoryPin kAllMemoryPins[] = {MemoryPin::hugepages, MemoryPin::locked,
                                               MemoryPin::hostdev, MemoryPin::preallocated,
                                               MemoryPin::launch_security};

// Per-VM settings from the domain XML <metadata> in memtide's namespace. Unset: the class
// default applies.
struct VmMetadata {
  std::optional<std::string> class_name;
  std::optional<SizeOrRatio> floor;
  std::optional<std::uint32_t> shares;
  std::optional<bool> balloon_enabled;
  std::optional<bool> scan_enabled;  // page-content scanning of this guest's memory
  friend bool operator==(const VmMetadata&, const VmMetadata&) = default;
};

// /proc/PID/ksm_stat of the QEMU process (Linux 6.1+; fields added over time).
struct ProcessKsmStat {
  std::uint64_t rmap_items = 0;
  std::optional<std::uint64_t> zero_pages_bytes;  // ksm_zero_pages
  std::optional<std::uint64_t> merging_bytes;     // ksm_merging_pages
  std::optional<std::int64_t> profit_bytes;       // ksm_process_profit
  friend bool operator==(const ProcessKsmStat&, const ProcessKsmStat&) = default;
};

// The host's view of the QEMU process that runs the guest.
struct QemuProcess {
  int pid = 0;
  std::optional<std::uint64_t> rss_bytes;   // VmRSS: guest RAM resident on the host
  std::optional<std::uint64_t> swap_bytes;  // VmSwap: guest RAM the host swapped out
  std::optional<ProcessKsmStat> ksm;        // unavailable on older kernels or without access
  friend bool operator==(const QemuProcess&, const QemuProcess&) = default;
};

// A virtio-mem device (<memory model='virtio-mem'>): memory the guest plugs and unplugs in whole
// blocks at the host's request. Unlike a balloon, the guest's own memory size changes with it.
// Sizes come from the live domain XML and MEMORY_DEVICE_SIZE_CHANGE events.
struct VirtioMemDevice {
  std::string alias;                  // libvirt's device alias, e.g. "virtiomem0"
  std::optional<std::uint32_t> node;  // the guest NUMA node it plugs into
  std::uint64_t block_bytes = 0;      // granularity: every request is a multiple of it
  std::uint64_t max_bytes = 0;        // <size>: the most it can plug
  std::uint64_t requested_bytes = 0;  // <requested>: what the host asked the guest to plug
  std::uint64_t plugged_bytes = 0;    // <current>: what the guest has plugged
  // The requested size the domain was started with (its persistent configuration's, or the
  // first seen for a transient domain): what a restore brings the device back to.
  std::uint64_t configured_bytes = 0;
  friend bool operator==(const VirtioMemDevice&, const VirtioMemDevice&) = default;
};

// A VM's identity in memtide: the name of the libvirt connection it was found on and its UUID,
// "connection/uuid"; with the single unnamed connection (libvirt.uri), the UUID alone. Two
// daemons reporting the same UUID are two VMs. Connection names never hold '/' (config), and
// UUIDs never do, so the key splits at its first '/'.
inline std::string vm_key(std::string_view connection, std::string_view uuid) {
  if (connection.empty()) {
    return std::string(uuid);
  }
  std::string key;
  key.reserve(connection.size() + 1 + uuid.size());
  key.append(connection).append(1, '/').append(uuid);
  return key;
}

struct VmSample {
  std::string uuid;
  std::string connection;  // the libvirt connection's name; empty with the single libvirt.uri
  std::string name;
  VmState state = VmState::other;
  std::uint64_t max_bytes = 0;      // the most the balloon may give the guest (balloon.maximum)
  std::uint64_t current_bytes = 0;  // the balloon's current size (balloon.current)
  std::optional<std::uint64_t> host_rss_bytes;  // balloon.rss as QEMU reports it
  // Bytes the guest has read from its disks (libvirt's block.N.rd.bytes, summed over its disks),
  // as asked at disk_reads_at_ms (the collector's monotonic clock) on a schedule of their own
  // (disk_read_schedule.hpp: with the balloon statistics while a shrink may come or has come,
  // seldom otherwise; the figures stand in between). A guest re-reading through read() what a
  // shrink evicted shows here and not in its major faults, which count only faults on mapped
  // files. Unset where the driver gives no bulk block statistics.
  std::optional<std::uint64_t> disk_read_bytes_total;
  std::int64_t disk_reads_at_ms = 0;
  GuestStatsStatus stats_status = GuestStatsStatus::disabled;
  std::uint32_t stats_period_s = 0;  // balloon statistics period in force (0: disabled)
  // The balloon device's options from the domain XML; unset until the XML has been read (and in
  // traces recorded before they were collected).
  std::optional<bool> balloon_autodeflate;          // deflates itself before the guest OOMs
  std::optional<bool> balloon_free_page_reporting;  // returns free pages to the host itself
  GuestMemory guest;
  VmMetadata metadata;
  std::vector<std::string> metadata_errors;  // invalid metadata: ignored, reported
  bool sharing_allowed = true;               // false with <memoryBacking><nosharepages/>
  std::vector<MemoryPin> memory_pins;        // empty: a balloon frees what it takes
  // Its virtio-mem devices, by alias. max_bytes and current_bytes above count them: libvirt's
  // memory size is the balloon's plus what the devices have plugged.
  std::vector<VirtioMemDevice> virtio_mem;
  std::optional<QemuProcess> process;
  // Why the host's view of the VM is unavailable although a process claims it (it is not proven
  // to be the VM's QEMU: another user's process, a copied binary, several claimants).
  std::optional<std::string> process_unavailable;
  std::optional<VmPageScan> page_scan;  // filled by the daemon's page scanner
  // Set when libvirt's sizes for the VM are impossible (beyond any host, current above maximum,
  // a KiB figure that overflows in bytes): why. Nothing is decided or done for such a VM.
  std::optional<std::string> invalid_sizes;
  // Its identity (vm_key): what per-VM state, history and commands are keyed by.
  std::string key() const { return vm_key(connection, uuid); }
  // key() == `k`, without building the key.
  bool has_key(std::string_view k) const {
    if (connection.empty()) {
      return k == uuid;
    }
    return k.size() == connection.size() + 1 + uuid.size() && k.starts_with(connection) &&
           k[connection.size()] == '/' && k.ends_with(uuid);
  }
  friend bool operator==(const VmSample&, const VmSample&) = default;
  // The snapshot's order: by name, then connection, then UUID.
  static bool in_order(const VmSample& a, const VmSample& b) {
    if (a.name != b.name) {
      return a.name < b.name;
    }
    return a.connection != b.connection ? a.connection < b.connection : a.uuid < b.uuid;
  }
};

// The most the balloon alone may give the guest: its maximum without the virtio-mem devices'
// sizes (libvirt refuses a balloon size above this when the domain has such devices).
inline std::uint64_t balloon_ceiling(std::uint64_t max_bytes,
                                     const std::vector<VirtioMemDevice>& devices) {
  std::uint64_t sizes = 0;
  for (const auto& d : devices) {
    sizes += d.max_bytes;
  }
  return sizes >= max_bytes ? 0 : max_bytes - sizes;
}
inline std::uint64_t balloon_ceiling(const VmSample& vm) {
  return balloon_ceiling(vm.max_bytes, vm.virtio_mem);
}

// What the VM's virtio-mem devices hold above what they were asked to plug: an unplug the guest
// is still carrying out, or cannot finish because it uses the memory. 0 for none.
inline std::uint64_t virtio_mem_unplug_pending_bytes(const VmSample& vm) {
  std::uint64_t pending = 0;
  for (const auto& d : vm.virtio_mem) {
    pending += d.plugged_bytes > d.requested_bytes ? d.plugged_bytes - d.requested_bytes : 0;
  }
  return pending;
}

// The size a restore gives the VM: its maximum, but virtio-mem devices at their configured size.
inline std::uint64_t restore_size(const VmSample& vm) {
  std::uint64_t configured = 0;
  for (const auto& d : vm.virtio_mem) {
    configured += std::min(d.configured_bytes, d.max_bytes);
  }
  return balloon_ceiling(vm) + configured;
}

// The largest memory size taken as real: 2^52 bytes (4 PiB), the most that x86-64's physical
// address space can hold. Anything larger from libvirt is an error, not a figure.
inline constexpr std::uint64_t kMaxPlausibleBytes = std::uint64_t{1} << 52;

// Why a VM's balloon sizes cannot be real, or "" when they can.
inline std::string implausible_sizes(const VmSample& vm) {
  if (vm.max_bytes > kMaxPlausibleBytes) {
    return "maximum " + std::to_string(vm.max_bytes) + " bytes is beyond any host";
  }
  if (vm.current_bytes > kMaxPlausibleBytes) {
    return "current size " + std::to_string(vm.current_bytes) + " bytes is beyond any host";
  }
  if (vm.current_bytes > vm.max_bytes) {
    return "current size " + std::to_string(vm.current_bytes) + " bytes is above the maximum " +
           std::to_string(vm.max_bytes);
  }
  return "";
}

inline const char* to_string(VmState state) {
  switch (state) {
    case VmState::running:
      return "running";
    case VmState::paused:
      return "paused";
    case VmState::shutoff:
      return "shutoff";
    case VmState::crashed:
      return "crashed";
    case VmState::other:
      return "other";
  }
  return "other";
}

// "hugepages", "locked", "hostdev", "preallocated", "launch-security".
inline const char* to_string(MemoryPin pin) {
  switch (pin) {
    case MemoryPin::hugepages:
      return "hugepages";
    case MemoryPin::locked:
      return "locked";
    case MemoryPin::hostdev:
      return "hostdev";
    case MemoryPin::preallocated:
      return "preallocated";
    case MemoryPin::launch_security:
      return "launch-security";
  }
  return "?";
}

// What holds the memory, for a sentence: "hugepage backing", "a passed-through device", ...
inline const char* describe(MemoryPin pin) {
  switch (pin) {
    case MemoryPin::hugepages:
      return "hugepage backing";
    case MemoryPin::locked:
      return "locked memory";
    case MemoryPin::hostdev:
      return "a passed-through device";
    case MemoryPin::preallocated:
      return "preallocated memory";
    case MemoryPin::launch_security:
      return "encrypted memory (launchSecurity)";
  }
  return "?";
}

inline const char* to_string(GuestStatsStatus status) {
  switch (status) {
    case GuestStatsStatus::ok:
      return "ok";
    case GuestStatsStatus::disabled:
      return "disabled";
    case GuestStatsStatus::no_driver:
      return "no-driver";
    case GuestStatsStatus::stale:
      return "stale";
    case GuestStatsStatus::no_balloon:
      return "no-balloon";
  }
  return "?";
}

}  // namespace memtide

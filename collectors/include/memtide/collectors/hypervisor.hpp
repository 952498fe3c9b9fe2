// The narrow interface between memtide and the hypervisor. The daemon uses the libvirt
// implementation (libvirt_hypervisor.hpp); tests of other layers use an in-memory fake.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <memtide/collectors/qemu_process.hpp>
#include <memtide/core/result.hpp>
#include <memtide/core/snapshot.hpp>
#include <memtide/core/vm_sample.hpp>

namespace memtide::collectors {

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;

  // Every active domain with its statistics, sorted by name. Brings the connection up first if
  // it is down (honouring the reconnect backoff). An Error means the hypervisor cannot be
  // reached now; the caller keeps its last good figures. `monotonic_ms` is the caller's clock,
  // used to judge whether guest statistics are stale. `hints` say which of the QEMU processes'
  // files the host's own figures show unchanged (see ProcessReadHints).
  virtual Result<std::vector<VmSample>> collect(std::int64_t monotonic_ms,
                                                const ProcessReadHints& hints) = 0;
  // The same with every process file read afresh.
  Result<std::vector<VmSample>> collect(std::int64_t monotonic_ms) {
    return collect(monotonic_ms, ProcessReadHints{});
  }

  // Sets the memory size of running domain `uuid` (its key, VmSample::key()) to `target_bytes`,
  // clamped to [floor_bytes, the domain's maximum] right here whatever the caller computed (a floor
  // above the maximum clamps to the maximum), through its balloon and, where it has them, its
  // virtio-mem devices (split_memory_size says which carries what). Returns the size actually
  // requested. Fails, and does nothing, when the domain is gone or not running; a failure
  // between the balloon and a device leaves the guest more memory than both sizes, not less.
  virtual Result<std::uint64_t> set_memory_size(const std::string& uuid, std::uint64_t target_bytes,
                                                std::uint64_t floor_bytes) = 0;

  // Each connection's state when this hypervisor spans several libvirt daemons; none otherwise.
  // Unlike the calls above, callable from any thread at any time.
  virtual std::vector<ConnectionState> connection_states() const { return {}; }
};

// The clamp every balloon change passes through: the result is within [floor, maximum], and a
// floor above the maximum yields the maximum.
constexpr std::uint64_t clamp_balloon(std::uint64_t target, std::uint64_t floor,
                                      std::uint64_t maximum) {
  if (floor > maximum) {
    floor = maximum;
  }
  return target < floor ? floor : target > maximum ? maximum : target;
}

// How one memory size for a VM is carried out by its balloon and its virtio-mem devices.
//
// The rule: the virtio-mem devices carry the part of the size above the balloon's ceiling
// (balloon_ceiling: the VM's maximum without the devices' sizes), in whole blocks rounded up;
// the balloon carries the rest: everything below its ceiling, and the part of a block the
// rounding added. Large moves therefore go through virtio-mem, which the guest sees as memory
// it has (no balloon to deflate, no host huge page split page by page), and steps finer than a
// block through the balloon. Devices are filled in order up to their configured size first,
// then up to their maximum, and emptied in the reverse order, so a restore to restore_size
// gives every device its configured size. Should a block be larger than what the balloon holds
// (a device block beyond the ceiling), the balloon stays at its ceiling and the total may exceed
// `target` by less than a block, never the VM's maximum.
struct MemorySplit {
  std::uint64_t balloon_bytes = 0;
  std::vector<std::uint64_t> requested_bytes;  // per device, in the order given
  std::uint64_t total_bytes() const {
    std::uint64_t total = balloon_bytes;
    for (auto r : requested_bytes) {
      total += r;
    }
    return total;
  }
};

// `target` must already be within [floor, maximum] (clamp_balloon over the whole VM).
MemorySplit split_memory_size(std::uint64_t target, std::uint64_t balloon_ceiling,
                              const std::vector<VirtioMemDevice>& devices);

}  // namespace memtide::collectors

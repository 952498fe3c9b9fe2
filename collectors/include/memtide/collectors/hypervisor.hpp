// The narrow interface between memtide and the hypervisor. The daemon uses the libvirt
// implementation (libvirt_hypervisor.hpp); tests of other layers use an in-memory fake.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <memtide/core/result.hpp>
#include <memtide/core/vm_sample.hpp>

namespace memtide::collectors {

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;

  // Every active domain with its statistics, sorted by name. Brings the connection up first if
  // it is down (honouring the reconnect backoff). An Error means the hypervisor cannot be
  // reached now; the caller keeps its last good figures. `monotonic_ms` is the caller's clock,
  // used to judge whether guest statistics are stale.
  virtual Result<std::vector<VmSample>> collect(std::int64_t monotonic_ms) = 0;

  // Asks the balloon of running domain `uuid` for `target_bytes`, clamped to
  // [floor_bytes, the domain's maximum] right here whatever the caller computed; a floor above
  // the maximum clamps to the maximum. Returns the size actually requested. Fails, and does
  // nothing, when the domain is gone or not running.
  virtual Result<std::uint64_t> set_balloon(const std::string& uuid, std::uint64_t target_bytes,
                                            std::uint64_t floor_bytes) = 0;
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

}  // namespace memtide::collectors

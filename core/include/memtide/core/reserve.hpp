// Whether the host is near its reserve: MemAvailable under twice host.reserve, the band where
// the policy's shrinks come from. Collection works harder there: converged VMs' page scans come
// at the fast interval, and guests' disk reads with every balloon query (DiskReadSchedule).
#pragma once

#include <cstdint>

namespace memtide {

inline bool host_near_reserve(std::uint64_t available_bytes, std::uint64_t reserve_bytes) {
  return available_bytes / 2 < reserve_bytes;
}

}  // namespace memtide

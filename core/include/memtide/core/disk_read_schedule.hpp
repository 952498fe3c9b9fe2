// When the collector asks libvirt for a guest's disk read counters (its block statistics group:
// one more query to QEMU, which costs libvirtd about as much as the balloon statistics it comes
// with). The policy reads disk reads only as re-reads after a shrink, measured against their
// rate when the shrink came (engine.cpp: rose_after_shrink); so they are asked with every
// balloon query while a shrink may come or has come, and seldom otherwise:
// - for `follow` after memtide shrank the guest (the classes' default cache_protection: the
//   time the policy looks for re-reads of what the shrink evicted);
// - while the host is near its reserve (MemAvailable under twice the reserve), where shrinks
//   come from: the rate a first shrink is measured against is then as fresh as before;
// - otherwise once an `interval`: the figures stand in between, and a shrink that still comes
//   (a swap forecast far above the reserve) is measured against the last interval's rate; a
//   cache_protection longer than `follow` sees a rise at that pace.
// The simulator applies the same schedule to its guests' counters.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>

namespace memtide {

inline constexpr std::chrono::milliseconds kDiskReadsFollow{600'000};
inline constexpr std::chrono::milliseconds kDiskReadsInterval{60'000};

// One guest's schedule; times on one monotonic clock, in ms.
class DiskReadSchedule {
 public:
  // Whether to ask with the balloon query at `now_ms`.
  bool due(std::int64_t now_ms, bool host_near_reserve) const {
    return !asked_ || host_near_reserve || now_ms < follow_until_ms_ ||
           now_ms >= next_ms_ - kEarlyMs;
  }
  void asked(std::int64_t now_ms, std::chrono::milliseconds interval = kDiskReadsInterval) {
    asked_ = true;
    next_ms_ = now_ms + interval.count();
  }
  void shrunk(std::int64_t now_ms, std::chrono::milliseconds follow = kDiskReadsFollow) {
    follow_until_ms_ = now_ms + follow.count();
  }
  // A new QEMU process (its counters start again from zero): asked at the next query.
  void restart() { asked_ = false; }

 private:
  // Collections come at a steady pace, give or take the tick's jitter: one that comes this much
  // early counts as on time.
  static constexpr std::int64_t kEarlyMs = 250;
  bool asked_ = false;
  std::int64_t next_ms_ = 0;
  std::int64_t follow_until_ms_ = std::numeric_limits<std::int64_t>::min();
};

}  // namespace memtide

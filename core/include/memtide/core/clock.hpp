// The two clocks memtide reads, in one place. Policy and report code never read a clock: they
// are given times (Snapshot::monotonic_ms, Snapshot::collected_at_unix_ms).
//
// monotonic: CLOCK_MONOTONIC (std::chrono::steady_clock on Linux, the clock sd-event's timers
//            use), for intervals, ages and rates; it restarts at boot.
// unix:      the wall clock, for timestamps shown to people and other programs.
#pragma once

#include <chrono>
#include <cstdint>

namespace memtide::clock {

inline std::int64_t monotonic_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

inline std::uint64_t monotonic_usec() {
  using namespace std::chrono;
  return static_cast<std::uint64_t>(
      duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count());
}

inline std::int64_t unix_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace memtide::clock

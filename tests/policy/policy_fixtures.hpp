// Hosts, guests and a class as a collector and a config file would give them to decide(), shared
// by the policy's tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>
#include <memtide/policy/engine.hpp>

#include "../support/sizes.hpp"

namespace memtide::policy::testing {

using memtide::test_sizes::GiB;
using memtide::test_sizes::KiB;
using memtide::test_sizes::MiB;

// One class "default" over every VM: floor 1 GiB, 15 % free target, 512 MiB steps, 32 MiB
// deadband, 60 s hysteresis, 2 GiB host reserve. Rules are tested one at a time, so giving back
// on an idle host (on by default) is off here; it has tests of its own.
inline config::Config base_config() {
  using namespace std::chrono_literals;
  config::Config c;
  config::VmClass all;
  all.name = "default";
  all.match_name = "*";
  all.balloon.floor = SizeOrRatio{GiB};
  all.balloon.guest_free_ratio = 0.15;
  all.balloon.max_step = SizeOrRatio{512 * MiB};
  all.balloon.deadband_bytes = 32 * MiB;
  all.balloon.hysteresis = 60s;
  all.balloon.grow_when_host_idle = false;
  c.classes = {all};
  c.host.reserve_bytes = 2 * GiB;
  return c;
}

// A running guest with fresh statistics that has never swapped.
inline VmSample guest(const std::string& name, std::uint64_t current, std::uint64_t max,
                      std::uint64_t usable) {
  VmSample v;
  v.name = name;
  v.uuid = "uuid-" + name;
  v.state = VmState::running;
  v.stats_status = GuestStatsStatus::ok;
  v.current_bytes = current;
  v.max_bytes = max;
  v.guest.usable_bytes = usable;
  v.guest.total_bytes = current;
  v.guest.swap_in_bytes_total = 0;
  return v;
}

// `v` with a balloon that deflates itself before the guest runs out of memory: it can rescue
// itself from a burst, so everything above its comfort band is spare (tests of other rules use
// it to leave the burst room of guests without a rescue out of their figures).
inline VmSample self_rescuing(VmSample v) {
  v.balloon_autodeflate = true;
  return v;
}

// A host with `available` of `total` bytes and 16 GiB of swap, none of it in use.
inline Snapshot host(std::uint64_t available, std::uint64_t total = 64 * GiB) {
  Snapshot s;
  s.host.meminfo.total_bytes = total;
  s.host.meminfo.available_bytes = available;
  s.host.meminfo.swap_total_bytes = 16 * GiB;
  s.host.meminfo.swap_free_bytes = 16 * GiB;
  return s;
}

// The plan's command for `vm`, or nullptr.
inline const BalloonChange* change_for(const Plan& p, const std::string& vm) {
  for (const auto& c : p.balloons) {
    if (c.vm == vm) {
      return &c;
    }
  }
  return nullptr;
}

}  // namespace memtide::policy::testing

#include <memtide/sim/run.hpp>

namespace memtide::sim {

Outcome run(const Scenario& scenario, Policy& policy,
            const std::function<void(const World&)>& each_second) {
  World world(scenario.host, scenario.guests);
  const auto seconds = static_cast<long>(scenario.duration_s);
  for (long t = 0; t < seconds; ++t) {
    world.step();
    policy.on_second(world);
    if (each_second) {
      each_second(world);
    }
  }
  return {scenario.name, scenario.overcommit_ratio, policy.name(), world.totals()};
}

}  // namespace memtide::sim

namespace memtide::sim {

const std::vector<Score>& scores() {
  constexpr double kGiB = static_cast<double>(GiB);
  static const std::vector<Score> all = {
      {"host swap-out", "GiB", [](const Totals& t) { return t.host_swap_out_bytes / kGiB; }, 0.01},
      // Cold pages in host swap cost a write; pages a guest uses cost it a wait when they come
      // back in (everything the host swaps in is in use).
      {"host cold swap-out", "GiB",
       [](const Totals& t) { return (t.host_swap_out_bytes - t.host_hot_swap_out_bytes) / kGiB; },
       0.01},
      {"host hot swap-in", "GiB", [](const Totals& t) { return t.host_swap_in_bytes / kGiB; },
       0.01},
      {"guest OOMs", "", [](const Totals& t) { return static_cast<double>(t.guest_ooms); }, 0.5},
      {"guest pressure", "VM-min", [](const Totals& t) { return t.guest_pressure_seconds / 60; },
       0.5},
      {"lost work", "GiB-min", [](const Totals& t) { return t.lost_work_byte_seconds / kGiB / 60; },
       0.5},
      {"working set evicted", "GiB-min",
       [](const Totals& t) { return t.evicted_byte_seconds / kGiB / 60; }, 0.5},
      {"refault I/O", "GiB", [](const Totals& t) { return t.refault_bytes / kGiB; }, 0.05},
      // Re-reading (or swapping in) above 1,000 pages/s past its first minute with the host above
      // its reserve: memory the host had was not given where it was lost work.
      {"long re-reads above reserve", "VM-min",
       [](const Totals& t) { return t.long_reread_seconds / 60; }, 0.5},
      {"balloon commands", "",
       [](const Totals& t) { return static_cast<double>(t.balloon_actions); }, 0.5},
      {"back above reserve", "s", [](const Totals& t) { return t.reserve_recovery_seconds; }, 5},
  };
  return all;
}

}  // namespace memtide::sim

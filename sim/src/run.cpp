#include <memtide/sim/run.hpp>

namespace memtide::sim {

Outcome run(const Scenario& scenario, Policy& policy) {
  World world(scenario.host, scenario.guests);
  const auto seconds = static_cast<long>(scenario.duration_s);
  for (long t = 0; t < seconds; ++t) {
    world.step(1.0);
    policy.on_second(world);
  }
  return {scenario.name, scenario.overcommit_ratio, policy.name(), world.totals()};
}

}  // namespace memtide::sim

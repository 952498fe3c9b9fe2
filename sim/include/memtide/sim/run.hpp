// Running a scenario under a policy, and the scores compared across policies.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <memtide/sim/policies.hpp>
#include <memtide/sim/scenarios.hpp>

namespace memtide::sim {

struct Outcome {
  std::string scenario;
  double overcommit_ratio = 0;
  std::string policy;
  Totals totals;
  double mean_ballooned_bytes() const {
    return totals.seconds > 0 ? totals.ballooned_byte_seconds / totals.seconds : 0;
  }
};

// Steps the world one simulated second at a time for the scenario's duration, letting the policy
// act after each step, then `each_second` look at the world (memtide-sim --plot). Deterministic.
Outcome run(const Scenario& scenario, Policy& policy,
            const std::function<void(const World&)>& each_second = nullptr);

// One score of the scoreboard: lower is better for every one.
struct Score {
  const char* name;  // column heading
  const char* unit;
  double (*of)(const Totals&);
  // Differences below this are ties (an amount too small to matter, in the score's unit).
  double tie;
};
const std::vector<Score>& scores();

}  // namespace memtide::sim

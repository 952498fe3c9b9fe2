// The evaluation scenarios. Host: 32 GiB RAM, 2 GiB overhead. Guests: 4 GiB maximum, floor 30 %
// (memtide's default class floor, applied to every policy), as many as the overcommit ratio
// (sum of guest maxima / host RAM) asks for, in a repeating mix of four workloads:
//
//   idle   0.5 GiB anonymous, 2.0 GiB page cache      web    1.0 GiB, 1.0 GiB cache
//   db     2.0 GiB anonymous, 1.2 GiB page cache      batch  1.4 GiB, 0.5 GiB cache
//
// steady  constant demand, 30 min.
// daily   demand follows a compressed day (1 h period, 2 h): 0.5x at night, up to 1.3x at peak,
//         peaks nearly aligned across guests.
// burst   every third guest ramps to 3.4 GiB within 20 s at minute 10, holds 10 min, drops back.
// noisy   one guest jumps to a new random demand (0.3-3.6 GiB) every 20 s; the rest steady.
// boot    guests boot 5 s apart and touch 90 % of their memory for their first 30 s (firmware
//         and OS zeroing pages), then settle to their workload; 20 min.
//
// In every scenario guests start with their balloon at maximum and an empty page cache, which
// fills at 8 MiB/s: the first minutes are the host filling up.
#pragma once

#include <string>
#include <vector>

#include <memtide/sim/world.hpp>

namespace memtide::sim {

struct Scenario {
  std::string name;
  double overcommit_ratio = 1;
  HostSpec host;
  std::vector<GuestSpec> guests;
  double duration_s = 0;
};

std::vector<std::string> scenario_names();

// The named scenario at the given overcommit ratio; throws std::invalid_argument for an unknown
// name or a ratio outside (0, 8].
Scenario make_scenario(const std::string& name, double overcommit_ratio);

}  // namespace memtide::sim

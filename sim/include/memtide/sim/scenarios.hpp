// The evaluation scenarios: named ones, each showing one situation policies live or die by, and
// seeded random ones, which are the real check (constants tuned to the named ones alone win
// nothing there).
//
// Named: a 32 GiB host with 2 GiB overhead; 4 GiB guests (floor 30 %, 1 GiB of guest swap, 64 MiB
// of tmpfs), as many as the overcommit ratio (sum of guest maxima / host RAM) asks for, in a
// repeating mix of four workloads (anonymous memory, file data read, file working set):
//
//   idle   0.5 GiB, 2.0 GiB read, 0.3 GiB working set     web    1.0 GiB, 1.0, 0.6
//   db     2.0 GiB, 1.2 GiB read, 0.9 GiB working set     batch  1.4 GiB, 0.5, 0.2
//
// steady   constant demand, 30 min.
// daily    demand follows a compressed day (1 h period, 2 h): 0.5x at night, up to 1.3x at peak,
//          peaks nearly aligned across guests.
// burst    every third guest ramps to 3.4 GiB within 20 s at minute 10, holds 10 min, drops back.
// noisy    one guest jumps to a new random demand (0.3-3.6 GiB) every 20 s; the rest steady.
// boot     guests boot 5 s apart and touch 90 % of their memory for their first 30 s, then
//          settle to their workload; 20 min.
// squeeze  steady, and at minute 10 a non-VM process pins a quarter of RAM for 10 min.
// tmpfs    steady for 12 min; then every fourth guest writes 600 MiB to tmpfs within 6 s, holds
//          it 5 min and deletes it. Every other guest has no swap. 25 min.
// trickle  steady, with unrelated cgroups swapping 16 KiB/s on the host (costs nothing).
//
// In every scenario guests start with their balloon at maximum and an empty page cache, which
// fills at 8 MiB/s: the first minutes are the host filling up.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <memtide/sim/world.hpp>

namespace memtide::sim {

struct Scenario {
  std::string name;
  double overcommit_ratio = 1;
  std::uint64_t seed = 0;  // random scenarios: the seed that made it
  HostSpec host;
  std::vector<GuestSpec> guests;
  double duration_s = 0;
};

std::vector<std::string> scenario_names();

// Gives every guest of `scenario` a virtio-mem device over all but a quarter of its maximum (the
// base memory, whole blocks), in `block_bytes` blocks: the same scenario resized the modern way.
void give_virtio_mem(Scenario& scenario, std::uint64_t block_bytes = 2 * MiB);

// Turns free page reporting on for every guest of `scenario`.
void report_free_pages(Scenario& scenario);

// The named scenario at the given overcommit ratio; throws std::invalid_argument for an unknown
// name or a ratio outside (0, 8].
Scenario make_scenario(const std::string& name, double overcommit_ratio);

// A random scenario from `seed` (the same seed, the same scenario): a host of 16-128 GiB RAM
// with 1-8 % overhead, swappiness 10-100, maybe a squeeze and a swap trickle; guests of 1-64 GiB
// (at most half the RAM each) with random floors (10-50 %), shares, workloads (constant, daily,
// burst, noisy, boot, tmpfs bursts), file working sets, guest swap (none to 2 GiB) and free page
// reporting, up to an overcommit ratio of 1.0-2.5; 20 min.
Scenario make_random_scenario(std::uint64_t seed);

}  // namespace memtide::sim

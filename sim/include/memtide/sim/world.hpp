// A model of one host and its guests, stepped in simulated seconds. It is deliberately small, but
// it has the properties balloon policies live or die by:
//
// - A guest's memory is its balloon size. Inside it the guest keeps a kernel share, its anonymous
//   working set (the demand curve, what the workload needs) and page cache, which fills free guest
//   memory over time up to the workload's file working set and is dropped first when the balloon
//   inflates. Demand that does not fit is swapped inside the guest: guest pressure.
// - The host sees each guest as the QEMU process's resident memory: every page the guest has
//   touched stays resident (no free page reporting) until the balloon takes it back.
// - Host memory is its own overhead plus every guest's resident memory; beyond RAM the host
//   swaps. Host PSI rises with swap activity.
// - Balloons move toward their targets at a finite speed, and targets are clamped to
//   [floor, maximum] as memtide's actuator does for every policy.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <memtide/core/snapshot.hpp>

namespace memtide::sim {

inline constexpr std::uint64_t MiB = 1ULL << 20;
inline constexpr std::uint64_t GiB = 1ULL << 30;

struct GuestSpec {
  std::string name;
  std::uint64_t max_bytes = 4 * GiB;
  std::uint64_t floor_bytes = 1 * GiB;           // no policy may shrink the balloon below this
  std::uint64_t kernel_bytes = 128 * MiB;        // the guest kernel's own unreclaimable memory
  std::uint64_t cache_limit_bytes = 1 * GiB;     // the workload's file working set
  std::function<double(double t)> demand_bytes;  // anonymous memory wanted at second t
  double start_s = 0;  // starts at this second with its balloon at maximum and an empty page
                       // cache; not running before
  double cache_fill_bytes_per_s = 8.0 * MiB;  // how fast page cache grows into free memory
};

struct HostSpec {
  std::uint64_t ram_bytes = 32 * GiB;
  std::uint64_t overhead_bytes = 2 * GiB;    // host kernel, services, QEMU's own overhead
  double balloon_bytes_per_s = 512.0 * MiB;  // how fast a balloon moves toward its target
};

// Everything the model tracks for one guest; figures in bytes.
struct Guest {
  GuestSpec spec;
  bool running = false;
  double balloon = 0;   // current balloon size: the memory the guest has
  double target = 0;    // where the balloon is heading
  double anon = 0;      // anonymous memory held in guest RAM
  double swapped = 0;   // anonymous memory the guest had to swap out (demand not held)
  double cache = 0;     // page cache
  double resident = 0;  // guest RAM resident on the host (pages ever touched, within balloon)
  double swap_out_total = 0;
  double swap_in_total = 0;
  double pressure_seconds = 0;  // time with demand not held in RAM
};

// Running totals of one simulation, the figures the comparison table reports.
struct Totals {
  double host_swap_out_bytes = 0;
  double guest_pressure_seconds = 0;  // summed over guests
  double guest_swap_out_bytes = 0;
  double ballooned_byte_seconds = 0;  // integral of sum(max - balloon) over running guests
  double seconds = 0;
  std::uint64_t balloon_actions = 0;  // commands issued by the policy
  double min_available_bytes = -1;
};

class World {
 public:
  World(HostSpec host, std::vector<GuestSpec> guests);

  // Advances the model by `dt` seconds (> 0) to time now() + dt.
  void step(double dt);
  double now() const { return now_; }

  // A balloon command: the target is clamped to [floor, maximum]. Counts as one action when it
  // changes the target by at least a page. Ignored for guests not running.
  void set_target(std::size_t guest, std::uint64_t bytes);

  const std::vector<Guest>& guests() const { return guests_; }
  const HostSpec& host() const { return host_; }
  double host_used_bytes() const;
  double host_available_bytes() const;  // MemAvailable: RAM not in use (0 while swapping)
  double host_swapped_bytes() const { return host_swapped_; }
  bool host_swapping_now() const { return swapping_now_; }
  const Totals& totals() const { return totals_; }

  // The figures a collector would report right now: host meminfo, vmstat counters, memory PSI,
  // and every running guest as libvirt shows it (balloon size, maximum, guest statistics with
  // usable = free + page cache, unused = free). `monotonic_ms` is now() in milliseconds.
  Snapshot snapshot() const;

 private:
  void step_guest(Guest& g, double dt);

  HostSpec host_;
  std::vector<Guest> guests_;
  double now_ = 0;
  double host_swapped_ = 0;
  double host_swap_out_total_ = 0;
  double host_swap_in_total_ = 0;
  double psi_some_total_s_ = 0;
  double psi_full_total_s_ = 0;
  double psi_some_avg10_ = 0;
  double psi_full_avg10_ = 0;
  bool swapping_now_ = false;
  Totals totals_;
};

}  // namespace memtide::sim

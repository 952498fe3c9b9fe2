// Balloon policies the simulator can run: memtide's own (policy::decide, unchanged) and two
// comparison policies that follow the published rules of oVirt MOM's default balloon policy
// (doc/balloon.rules with mom/Entity.py's StatAvg) and Proxmox VE's automatic ballooning
// (PVE/AutoBalloon.pm compute_alg1, called by pvestatd's auto_ballooning). The comparison
// policies exist only here, for evaluation; they see the figures their collectors would report.
#pragma once

#include <memory>
#include <string>

#include <memtide/config/config.hpp>
#include <memtide/policy/engine.hpp>
#include <memtide/sim/world.hpp>

namespace memtide::sim {

class Policy {
 public:
  virtual ~Policy() = default;
  virtual std::string name() const = 0;
  // Called every simulated second; the policy decides when it acts (its own cadence) and issues
  // commands through world.set_target().
  virtual void on_second(World& world) = 0;
};

// memtide: policy::decide every config.daemon.interval, and at once (at most once a second)
// when the host starts swapping, as the daemon's PSI trigger does. Floors are honoured.
std::unique_ptr<Policy> make_memtide(std::shared_ptr<const config::Config> config);

// oVirt MOM, default balloon.rules. Host and guest statistics are collected every 5 s and the
// rules run every 10 s on StatAvg, the mean of the last 10 samples. host_free_percent =
// StatAvg(MemFree + Buffers + Cached) / MemTotal. Below pressure_threshold (20 %) every guest
// shrinks by 5 % of its balloon, but not below used + guest_free_percent x balloon, where used =
// StatAvg(balloon_cur) - StatAvg(mem_unused) (page cache counts as used) and guest_free_percent
// = 20 % scaled by host_free_percent / 20 %, or host_free_percent - 5 % at or below 5 % (critical).
// Otherwise every guest below its maximum grows by 5 %, at least to used + 20 % of its balloon.
// A change of at most 0.25 % of the balloon is not sent. In libvirt mode balloon_min is the
// domain's <min_guarantee>, unset on these guests: no floor.
std::unique_ptr<Policy> make_mom();

// Proxmox VE automatic ballooning, every 10 s: goal = 80 % of MemTotal - (MemTotal -
// MemAvailable); nothing when |goal| <= 10 MiB. VMs with MemFree above a quarter of their
// minimum and a balloon at or above it have "enough free memory"; the others are "under
// pressure". Growing serves the ones under pressure first and all of them only when that makes
// no progress; shrinking takes from the ones with enough free memory first and from all only
// when that makes no progress. Balloons are water-filled by shares (1000 each by default)
// between minimum and maximum, each moving at most 100 MiB per cycle. Proxmox starts VMs
// ballooned to their minimum and enables free page reporting on their balloons.
std::unique_ptr<Policy> make_proxmox();

}  // namespace memtide::sim

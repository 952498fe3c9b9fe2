// Balloon policies the simulator can run: memtide's own (policy::decide, unchanged) and two
// comparison policies that follow the published rules of oVirt MOM's default balloon policy
// (balloon.rules) and Proxmox VE's AutoBalloon (pvestatd). The comparison policies exist only
// here, for evaluation; they see the same figures a collector would report.
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
// when the host starts swapping, as the daemon's PSI trigger does.
std::unique_ptr<Policy> make_memtide(std::shared_ptr<const config::Config> config);

// oVirt MOM, default balloon.rules, every 10 s. host_free_percent = (MemFree + Buffers + Cached)
// / MemTotal, which for the model is MemAvailable / MemTotal. Below pressure_threshold (20 %)
// every guest shrinks by up to max_balloon_change_percent (5 %) of its balloon, but not below
// used + guest_free_percent * balloon, where used = balloon - MemFree (page cache counts as used)
// and guest_free_percent = min_guest_free_percent (20 %) scaled by host_free_percent /
// pressure_threshold, or host_free_percent - 5 % when critical (<= 5 %). Otherwise every guest
// below its maximum grows by 5 %, at least to used + 20 % of its maximum. A change smaller than
// min_balloon_change_percent (0.25 %) of the balloon is not sent.
std::unique_ptr<Policy> make_mom();

// Proxmox VE AutoBalloon, every 10 s: goal = 80 % of MemTotal - used (used = MemTotal -
// MemAvailable); nothing when |goal| <= 10 MiB. Balloons are water-filled by shares (1000 each)
// between each VM's minimum and maximum, every VM moving at most 100 MiB per cycle; when growing,
// VMs with MemFree below 10 % of their balloon are served first.
std::unique_ptr<Policy> make_proxmox();

}  // namespace memtide::sim

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <memtide/sim/policies.hpp>

namespace memtide::sim {

namespace {

std::uint64_t bytes(double v) {
  return v <= 0 ? 0 : static_cast<std::uint64_t>(std::llround(v));
}

// Index of each guest by name, for turning a plan's VM names into world commands.
std::map<std::string, std::size_t> guest_index(const World& world) {
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < world.guests().size(); ++i) {
    index[world.guests()[i].spec.name] = i;
  }
  return index;
}

class Memtide : public Policy {
 public:
  explicit Memtide(std::shared_ptr<const config::Config> config) : config_(std::move(config)) {}
  std::string name() const override { return "memtide"; }

  void on_second(World& world) override {
    const double interval = static_cast<double>(config_->daemon.interval.count()) / 1000.0;
    const bool due = last_ < 0 || world.now() - last_ >= interval - 1e-9;
    const bool triggered = world.host_swapping_now() && world.now() - last_ >= 1.0;
    if (!due && !triggered) {
      return;
    }
    last_ = world.now();
    const Snapshot snapshot = world.snapshot();
    auto decision = policy::decide(snapshot, std::move(state_), *config_, snapshot.monotonic_ms);
    state_ = std::move(decision.state);
    if (index_.empty()) {
      index_ = guest_index(world);
    }
    for (const auto& change : decision.plan.balloons) {
      world.set_target(index_.at(change.vm), change.to_bytes);
    }
  }

 private:
  std::shared_ptr<const config::Config> config_;
  policy::PolicyState state_;
  std::map<std::string, std::size_t> index_;
  double last_ = -1;
};

// Shared cadence for the two 10 s baselines.
class EveryTenSeconds : public Policy {
 public:
  void on_second(World& world) override {
    if (last_ >= 0 && world.now() - last_ < 10.0 - 1e-9) {
      return;
    }
    last_ = world.now();
    act(world);
  }

 protected:
  virtual void act(World& world) = 0;

 private:
  double last_ = -1;
};

class Mom : public EveryTenSeconds {
 public:
  std::string name() const override { return "oVirt MOM"; }

 protected:
  void act(World& world) override {
    constexpr double pressure_threshold = 0.20;
    constexpr double pressure_critical = 0.05;
    constexpr double min_guest_free_percent = 0.20;
    constexpr double max_balloon_change_percent = 0.05;
    constexpr double min_balloon_change_percent = 0.0025;
    const Snapshot s = world.snapshot();
    const double host_free_percent = static_cast<double>(s.host.meminfo.available_bytes) /
                                     static_cast<double>(s.host.meminfo.total_bytes);
    const auto index = guest_index(world);
    for (const auto& vm : s.vms) {
      const double cur = static_cast<double>(vm.current_bytes);
      const double max = static_cast<double>(vm.max_bytes);
      const double used = cur - static_cast<double>(vm.guest.unused_bytes.value_or(0));
      double size = 0;
      if (host_free_percent < pressure_threshold) {
        const double guest_free_percent =
            host_free_percent <= pressure_critical
                ? host_free_percent - 0.05
                : min_guest_free_percent * (host_free_percent / pressure_threshold);
        const double balloon_min = used + guest_free_percent * cur;
        size = std::max(cur * (1 - max_balloon_change_percent), balloon_min);
        if (size > cur) {
          continue;
        }
      } else {
        if (cur >= max) {
          continue;
        }
        const double balloon_min = used + min_guest_free_percent * max;
        size = std::min(cur * (1 + max_balloon_change_percent), max);
        size = std::max(size, balloon_min);
      }
      if (std::abs(size - cur) > min_balloon_change_percent * cur) {
        world.set_target(index.at(vm.name), bytes(size));
      }
    }
  }
};

class Proxmox : public EveryTenSeconds {
 public:
  std::string name() const override { return "Proxmox"; }

 protected:
  struct Vm {
    std::size_t index;
    double balloon;  // current
    double min;
    double max;
    double free;  // guest MemFree
    double shares = 1000;
  };

  // Water-fills `amount` (positive: grow, negative: shrink) over `ids`, each VM moving at most
  // kMaxChange from its current balloon; updates `res`; returns what could not be placed.
  static double change(std::map<std::size_t, double>& res, const std::vector<Vm>& vms,
                       const std::vector<std::size_t>& ids, double amount) {
    constexpr double kMaxChange = 100.0 * MiB;
    double rest = amount;
    bool repeat = true;
    double progress = 1;
    std::set<std::size_t> done;
    while (rest != 0 && repeat && progress > 0) {
      repeat = false;
      progress = 0;
      double shares_total = 0;
      double alloc_old = 0;
      for (const auto id : ids) {
        if (done.count(id) != 0) {
          continue;
        }
        const Vm& d = vms[id];
        const double balloon = res.count(id) != 0 ? res[id] : d.balloon;
        alloc_old += balloon - d.min;
        shares_total += d.shares;
      }
      if (shares_total == 0) {
        break;
      }
      double changes = 0;
      const double alloc_new = alloc_old + rest;
      for (const auto id : ids) {
        if (done.count(id) != 0) {
          continue;
        }
        const Vm& d = vms[id];
        double desired = d.min + std::floor(alloc_new / shares_total * d.shares);
        if (desired > d.max) {
          desired = d.max;
          repeat = true;
        } else if (desired < d.min) {
          desired = d.min;
          repeat = true;
        }
        double balloon = 0;
        if (amount > 0 && desired - d.balloon > 0) {
          balloon = std::min(d.balloon + kMaxChange, desired);
        } else if (desired - d.balloon < 0) {
          balloon = std::max(d.balloon - kMaxChange, desired);
        } else {
          done.insert(id);
          continue;
        }
        const double diff = balloon - d.balloon;
        if (diff != 0) {
          const double old = res.count(id) != 0 ? res[id] : d.balloon;
          res[id] = balloon;
          const double delta = balloon - old;
          if (delta != 0) {
            changes += delta;
            progress += std::abs(diff);
            repeat = true;
          }
        } else {
          done.insert(id);
        }
      }
      rest -= changes;
    }
    return rest;
  }

  void act(World& world) override {
    const Snapshot s = world.snapshot();
    const double total = static_cast<double>(s.host.meminfo.total_bytes);
    const double used = total - static_cast<double>(s.host.meminfo.available_bytes);
    const double goal = std::floor(total * 0.80 - used);
    const auto index = guest_index(world);
    std::vector<Vm> vms;
    std::vector<std::size_t> all;
    std::vector<std::size_t> pressured;  // idlist1: VMs short of free memory
    std::vector<std::size_t> relaxed;    // idlist2
    for (const auto& vm : s.vms) {
      const std::size_t i = index.at(vm.name);
      const auto& spec = world.guests()[i].spec;
      vms.push_back({i, static_cast<double>(vm.current_bytes),
                     static_cast<double>(spec.floor_bytes), static_cast<double>(vm.max_bytes),
                     static_cast<double>(vm.guest.unused_bytes.value_or(0))});
      const std::size_t id = vms.size() - 1;
      all.push_back(id);
      if (goal > 0 && vms[id].free > vms[id].balloon * 0.10) {
        relaxed.push_back(id);
      } else {
        pressured.push_back(id);
      }
    }
    std::map<std::size_t, double> res;
    if (goal > 10.0 * MiB) {
      const double rest = change(res, vms, pressured, goal);
      if (rest != 0) {
        change(res, vms, relaxed, rest);
      }
    } else if (goal < -10.0 * MiB) {
      change(res, vms, all, goal);
    }
    for (const auto& [id, target] : res) {
      world.set_target(vms[id].index, bytes(target));
    }
  }
};

}  // namespace

std::unique_ptr<Policy> make_memtide(std::shared_ptr<const config::Config> config) {
  return std::make_unique<Memtide>(std::move(config));
}
std::unique_ptr<Policy> make_mom() {
  return std::make_unique<Mom>();
}
std::unique_ptr<Policy> make_proxmox() {
  return std::make_unique<Proxmox>();
}

}  // namespace memtide::sim

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <set>

#include <memtide/core/disk_read_schedule.hpp>
#include <memtide/core/reserve.hpp>
#include <memtide/sim/policies.hpp>

#include "bytes.hpp"

namespace memtide::sim {

namespace {

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
    // memtided ticks early on the kernel's memory PSI trigger (at most every 200 ms, so here
    // every simulated second at most).
    const bool triggered = world.memory_pressure_event() && world.now() - last_ >= 1.0;
    if (!due && !triggered) {
      return;
    }
    last_ = world.now();
    Snapshot snapshot = world.snapshot();
    ask_disk_reads_as_memtided(snapshot);
    auto decision = policy::decide(snapshot, std::move(state_), *config_, snapshot.monotonic_ms);
    state_ = std::move(decision.state);
    if (index_.empty()) {
      index_ = guest_index(world);
    }
    for (const auto& change : decision.plan.balloons) {
      world.set_target(index_.at(change.vm), change.to_bytes);
      if (change.to_bytes < change.from_bytes) {
        disk_reads_[change.vm].schedule.shrunk(snapshot.monotonic_ms);
      }
    }
  }

 private:
  // The world's disk counters are live; memtided's collector asks for them on its schedule
  // (DiskReadSchedule), and between times its last figures stand.
  void ask_disk_reads_as_memtided(Snapshot& snapshot) {
    const bool near_reserve =
        host_near_reserve(snapshot.host.meminfo.available_bytes, config_->host.reserve_bytes);
    for (auto& vm : snapshot.vms) {
      auto& asked = disk_reads_[vm.name];
      if (asked.schedule.due(snapshot.monotonic_ms, near_reserve)) {
        asked.schedule.asked(snapshot.monotonic_ms);
        asked.bytes_total = vm.disk_read_bytes_total;
        asked.at_ms = vm.disk_reads_at_ms;
      }
      vm.disk_read_bytes_total = asked.bytes_total;
      vm.disk_reads_at_ms = asked.at_ms;
    }
  }

  struct DiskReads {
    DiskReadSchedule schedule;
    std::optional<std::uint64_t> bytes_total;
    std::int64_t at_ms = 0;
  };
  std::shared_ptr<const config::Config> config_;
  policy::PolicyState state_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, DiskReads> disk_reads_;  // by guest name
  double last_ = -1;
};

// The 10 s cadence of pvestatd.
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

class Mom : public Policy {
 public:
  std::string name() const override { return "oVirt MOM"; }

  void on_second(World& world) override {
    constexpr double kSampleSeconds = 5;   // host-monitor-interval, guest-monitor-interval
    constexpr double kPolicySeconds = 10;  // policy-engine-interval
    constexpr std::size_t kHistory = 10;   // sample-history-length
    if (last_sample_ < 0 || world.now() - last_sample_ >= kSampleSeconds - 1e-9) {
      last_sample_ = world.now();
      const Snapshot s = world.snapshot();
      push(host_free_,
           static_cast<double>(s.host.meminfo.free_bytes + s.host.meminfo.buffers_bytes +
                               s.host.meminfo.cached_bytes),
           kHistory);
      for (const auto& vm : s.vms) {
        auto& h = guests_[vm.name];
        push(h.balloon_cur, static_cast<double>(vm.current_bytes), kHistory);
        if (vm.guest.unused_bytes) {
          push(h.mem_unused, static_cast<double>(*vm.guest.unused_bytes), kHistory);
        }
      }
    }
    if (last_policy_ >= 0 && world.now() - last_policy_ < kPolicySeconds - 1e-9) {
      return;
    }
    last_policy_ = world.now();
    act(world);
  }

 private:
  struct History {
    std::deque<double> balloon_cur;
    std::deque<double> mem_unused;
  };

  static void push(std::deque<double>& d, double v, std::size_t n) {
    d.push_back(v);
    while (d.size() > n) {
      d.pop_front();
    }
  }
  static double avg(const std::deque<double>& d) {
    double sum = 0;
    for (const double v : d) {
      sum += v;
    }
    return d.empty() ? 0 : sum / static_cast<double>(d.size());
  }

  void act(World& world) {
    constexpr double pressure_threshold = 0.20;
    constexpr double pressure_critical = 0.05;
    constexpr double min_guest_free_percent = 0.20;
    constexpr double max_balloon_change_percent = 0.05;
    constexpr double min_balloon_change_percent = 0.0025;
    const Snapshot s = world.snapshot();
    const double host_free_percent =
        avg(host_free_) / static_cast<double>(s.host.meminfo.total_bytes);
    const auto index = guest_index(world);
    for (const auto& vm : s.vms) {
      const auto& h = guests_[vm.name];
      if (h.mem_unused.empty()) {
        continue;  // the guest memory collector has nothing yet: the rules skip it
      }
      const double cur = static_cast<double>(vm.current_bytes);
      const double max = static_cast<double>(vm.max_bytes);
      const double used = avg(h.balloon_cur) - avg(h.mem_unused);
      const auto big_enough = [cur](double size) {
        return std::abs(size - cur) > min_balloon_change_percent * cur;
      };
      double size = 0;
      if (host_free_percent < pressure_threshold) {
        const double guest_free_percent =
            host_free_percent <= pressure_critical
                ? host_free_percent - 0.05
                : min_guest_free_percent * (host_free_percent / pressure_threshold);
        const double balloon_min = std::max(0.0, used + guest_free_percent * cur);
        size = std::max(cur * (1 - max_balloon_change_percent), balloon_min);
        if (size > cur || !big_enough(size)) {
          continue;
        }
      } else {
        if (cur >= max) {
          continue;
        }
        const double balloon_min = std::max(0.0, used + min_guest_free_percent * cur);
        size = std::max(cur * (1 + max_balloon_change_percent), balloon_min);
        size = std::min(size, max);
        if (!big_enough(size)) {
          continue;
        }
      }
      world.set_target(index.at(vm.name), bytes(size), /*honour_floor=*/false);
    }
  }

  std::deque<double> host_free_;
  std::map<std::string, History> guests_;
  double last_sample_ = -1;
  double last_policy_ = -1;
};

class Proxmox : public EveryTenSeconds {
 public:
  std::string name() const override { return "Proxmox"; }

  void on_second(World& world) override {
    // VMs start ballooned to their minimum (qemu-server sets the balloon target at start).
    for (std::size_t i = 0; i < world.guests().size(); ++i) {
      const auto& g = world.guests()[i];
      if (g.running && started_.emplace(i, world.now()).second) {
        world.set_target(i, g.spec.floor_bytes);
      }
    }
    EveryTenSeconds::on_second(world);
  }

 protected:
  struct Vm {
    std::size_t index;
    double balloon;  // current
    double min;
    double max;
    double free;  // guest MemFree
    double shares;
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
        shares_total += d.shares > 0 ? d.shares : 1000;
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
        const double shares = d.shares > 0 ? d.shares : 1000;
        double desired = d.min + std::floor(alloc_new / shares_total * shares);
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
    const auto index = guest_index(world);
    if (!prepared_) {
      world.set_free_page_reporting(true);  // Proxmox turns free page reporting on
      prepared_ = true;
    }

    const Snapshot s = world.snapshot();
    const double total = static_cast<double>(s.host.meminfo.total_bytes);
    const double used = total - static_cast<double>(s.host.meminfo.available_bytes);
    const double goal = std::floor(total * 0.80 - used);
    std::vector<Vm> vms;
    std::vector<std::size_t> all;
    std::vector<std::size_t> pressured;  // idlist1
    std::vector<std::size_t> relaxed;    // idlist2: enough free memory
    for (const auto& vm : s.vms) {
      if (!vm.guest.unused_bytes) {
        continue;  // no balloon statistics yet
      }
      const std::size_t i = index.at(vm.name);
      if (world.now() - started_.at(i) < 10) {
        continue;  // its start-up balloon target is still being carried out
      }
      const auto& spec = world.guests()[i].spec;
      vms.push_back({i, static_cast<double>(vm.current_bytes),
                     static_cast<double>(spec.floor_bytes), static_cast<double>(vm.max_bytes),
                     static_cast<double>(*vm.guest.unused_bytes),
                     static_cast<double>(spec.shares)});
      const std::size_t id = vms.size() - 1;
      all.push_back(id);
      const Vm& d = vms[id];
      if (d.free > 0 && d.free > d.min * 0.25 && d.balloon >= d.min) {
        relaxed.push_back(id);
      } else {
        pressured.push_back(id);
      }
    }
    std::map<std::size_t, double> res;
    if (goal > 10.0 * MiB) {
      const double rest = change(res, vms, pressured, goal);
      if (rest >= goal) {  // no progress: consider all VMs
        change(res, vms, all, rest);
      }
    } else if (goal < -10.0 * MiB) {
      const double rest = change(res, vms, relaxed, goal);
      if (rest <= goal) {  // no progress: consider all VMs
        change(res, vms, all, rest);
      }
    }
    for (const auto& [id, target] : res) {
      if (bytes(target) != bytes(vms[id].balloon)) {
        world.set_target(vms[id].index, bytes(target));
      }
    }
  }

  bool prepared_ = false;
  std::map<std::size_t, double> started_;  // guest -> when it was first seen running
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

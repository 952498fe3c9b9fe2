#include <algorithm>
#include <cmath>

#include <memtide/sim/world.hpp>

namespace memtide::sim {

namespace {

// Swap-out rate at which the host counts as fully stalled on memory (PSI "some" = 100 %).
constexpr double kStallingSwapRate = 256.0 * MiB;
constexpr double kSwapSpaceBytes = 16.0 * GiB;
constexpr double kThrashBytesPerS = 16.0 * MiB;
constexpr std::int64_t kEpochMs = 1'800'000'000'000;  // wall clock of second 0 in snapshots

std::uint64_t bytes(double v) {
  return v <= 0 ? 0 : static_cast<std::uint64_t>(std::llround(v));
}

}  // namespace

World::World(HostSpec host, std::vector<GuestSpec> guests) : host_(host) {
  for (auto& spec : guests) {
    Guest g;
    g.spec = std::move(spec);
    guests_.push_back(std::move(g));
  }
}

double World::host_used_bytes() const {
  double used = static_cast<double>(host_.overhead_bytes);
  for (const auto& g : guests_) {
    used += g.running ? g.resident : 0;
  }
  return used;
}

double World::host_available_bytes() const {
  return std::max(0.0, static_cast<double>(host_.ram_bytes) - host_used_bytes());
}

void World::set_target(std::size_t index, std::uint64_t target) {
  Guest& g = guests_.at(index);
  if (!g.running) {
    return;
  }
  ++totals_.balloon_actions;
  g.target = static_cast<double>(std::clamp(target, g.spec.floor_bytes, g.spec.max_bytes));
}

void World::step_guest(Guest& g, double dt) {
  // The balloon moves toward its target.
  const double reach = host_.balloon_bytes_per_s * dt;
  g.balloon = g.target > g.balloon ? std::min(g.target, g.balloon + reach)
                                   : std::max(g.target, g.balloon - reach);
  const double room = std::max(0.0, g.balloon - static_cast<double>(g.spec.kernel_bytes));

  // Anonymous demand: what fits is held, the rest is swapped inside the guest.
  const double want = std::max(0.0, g.spec.demand_bytes(now_));
  const double anon = std::min(want, room);
  const double swapped = want - anon;
  // While part of its working set is in swap, the guest keeps faulting pages back in and
  // pushing others out (thrashing), at up to kThrashBytesPerS.
  const double thrash = std::min(swapped, kThrashBytesPerS * dt);
  g.swap_out_total += std::max(0.0, swapped - g.swapped) + thrash;
  g.swap_in_total += std::max(0.0, g.swapped - swapped) + thrash;
  totals_.guest_swap_out_bytes += std::max(0.0, swapped - g.swapped);
  g.anon = anon;
  g.swapped = swapped;
  if (swapped > 0) {
    g.pressure_seconds += dt;
    totals_.guest_pressure_seconds += dt;
  }

  // Page cache gives way to anonymous memory and to the balloon, and refills free memory.
  const double free_for_cache = room - anon;
  g.cache = std::min(g.cache, free_for_cache);
  g.cache = std::min(g.cache + g.spec.cache_fill_bytes_per_s * dt,
                     std::min(static_cast<double>(g.spec.cache_limit_bytes), free_for_cache));

  // Pages the guest touches become resident on the host and stay so until the balloon takes
  // them back.
  const double touched = static_cast<double>(g.spec.kernel_bytes) + anon + g.cache;
  g.resident = std::min(g.balloon, std::max(g.resident, touched));
}

void World::step(double dt) {
  now_ += dt;
  double ballooned = 0;
  for (auto& g : guests_) {
    if (!g.running && now_ >= g.spec.start_s) {
      g.running = true;
      g.balloon = g.target = static_cast<double>(g.spec.max_bytes);
      g.resident = static_cast<double>(g.spec.kernel_bytes);
    }
    if (g.running) {
      step_guest(g, dt);
      ballooned += static_cast<double>(g.spec.max_bytes) - g.balloon;
    }
  }
  totals_.ballooned_byte_seconds += ballooned * dt;
  totals_.seconds += dt;

  // The host swaps whatever does not fit in RAM.
  const double excess = std::max(0.0, host_used_bytes() - static_cast<double>(host_.ram_bytes));
  const double out = std::max(0.0, excess - host_swapped_);
  host_swap_out_total_ += out;
  host_swap_in_total_ += std::max(0.0, host_swapped_ - excess);
  host_swapped_ = excess;
  swapping_now_ = out > 0;
  totals_.host_swap_out_bytes += out;

  // Memory PSI: a host with memory in swap stalls on refaults; swap-out adds to it.
  const double some = excess > 0 ? std::min(1.0, 0.2 + out / dt / kStallingSwapRate) : 0.0;
  const double full = some / 2;
  psi_some_total_s_ += some * dt;
  psi_full_total_s_ += full * dt;
  const double decay = 1 - std::exp(-dt / 10.0);
  psi_some_avg10_ += (some - psi_some_avg10_) * decay;
  psi_full_avg10_ += (full - psi_full_avg10_) * decay;

  const double available = host_available_bytes();
  totals_.min_available_bytes = totals_.min_available_bytes < 0
                                    ? available
                                    : std::min(totals_.min_available_bytes, available);
}

Snapshot World::snapshot() const {
  Snapshot s;
  const auto now_ms = static_cast<std::int64_t>(std::llround(now_ * 1000));
  s.collected_at_unix_ms = kEpochMs + now_ms;
  s.monotonic_ms = now_ms;
  auto& m = s.host.meminfo;
  m.total_bytes = host_.ram_bytes;
  m.available_bytes = bytes(host_available_bytes());
  m.free_bytes = m.available_bytes;
  m.swap_total_bytes = bytes(kSwapSpaceBytes);
  m.swap_free_bytes = bytes(std::max(0.0, kSwapSpaceBytes - host_swapped_));
  s.host.vmstat.swap_out_bytes_total = bytes(host_swap_out_total_);
  s.host.vmstat.swap_in_bytes_total = bytes(host_swap_in_total_);
  s.host.psi_memory =
      Pressure{PressureLine{psi_some_avg10_, psi_some_avg10_, psi_some_avg10_, psi_some_total_s_},
               PressureLine{psi_full_avg10_, psi_full_avg10_, psi_full_avg10_, psi_full_total_s_}};
  s.hypervisor_up = true;
  for (const auto& g : guests_) {
    if (!g.running) {
      continue;
    }
    VmSample vm;
    vm.name = g.spec.name;
    vm.uuid = "sim-" + g.spec.name;
    vm.state = VmState::running;
    vm.stats_status = GuestStatsStatus::ok;
    vm.stats_period_s = 5;
    vm.max_bytes = g.spec.max_bytes;
    vm.current_bytes = bytes(g.balloon);
    const double room = std::max(0.0, g.balloon - static_cast<double>(g.spec.kernel_bytes));
    const double free = std::max(0.0, room - g.anon - g.cache);
    vm.guest.total_bytes = vm.current_bytes;
    vm.guest.usable_bytes = bytes(free + g.cache);
    vm.guest.unused_bytes = bytes(free);
    vm.guest.disk_caches_bytes = bytes(g.cache);
    vm.guest.swap_out_bytes_total = bytes(g.swap_out_total);
    vm.guest.swap_in_bytes_total = bytes(g.swap_in_total);
    vm.guest.major_faults_total = bytes(g.swap_in_total / 4096);
    vm.guest.last_update_unix_s = s.collected_at_unix_ms / 1000;
    vm.host_rss_bytes = bytes(g.resident);
    s.vms.push_back(std::move(vm));
  }
  std::sort(s.vms.begin(), s.vms.end(),
            [](const VmSample& a, const VmSample& b) { return a.name < b.name; });
  return s;
}

}  // namespace memtide::sim

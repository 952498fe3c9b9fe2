#include <algorithm>
#include <cmath>

#include <memtide/sim/world.hpp>

#include "bytes.hpp"

namespace memtide::sim {

namespace {

constexpr std::int64_t kEpochMs = 1'800'000'000'000;  // wall clock of second 0 in snapshots
// While part of its anonymous memory is in swap, a guest keeps faulting pages back in and
// pushing others out (thrashing), at up to this rate.
constexpr double kThrashBytesPerS = 16.0 * MiB;
// A guest re-reads its file working set about once per this many seconds: what is not cached is
// read again from disk at working set / this per second.
constexpr double kWorkingSetRereadSeconds = 100;
// Free pages a guest with free page reporting has are returned with this time constant.
constexpr double kFreePageReportingSeconds = 2;
// Of a guest's pages in host swap that it uses, this share per second faults back in.
constexpr double kHostSwapInShare = 0.2;
// Swap-in at this rate stalls the host fully (PSI some = 100 %).
constexpr double kStallingSwapInRate = 128.0 * MiB;
// What the host's swap device moves per second, in and out together.
constexpr double kSwapBandwidthBytesPerS = 256.0 * MiB;
constexpr double kHostCacheFillBytesPerS = 16.0 * MiB;
// The kernel's low watermark, as a share of RAM: kswapd starts below it and works to twice it.
constexpr double kLowWatermarkShare = 0.01;
// kswapd's LRU only approximates "coldest first": a page it finds unreferenced since the last
// scan is evicted, and a page the guest uses is sometimes among them (aged between two uses, its
// access bit cleared and not set again in time). Per byte, a page the guest uses is this likely
// to be evicted compared with a cold one.
constexpr double kHotEvictionWeight = 0.1;
// A guest whose swap is this full can no longer run its balloon driver: no statistics.
constexpr double kStarvingSwapShare = 0.9;

double at(const Curve& curve, double t) {
  return curve ? std::max(0.0, curve(t)) : 0.0;
}

}  // namespace

double Guest::unreclaimable(double t) const {
  return static_cast<double>(spec.kernel_bytes) + at(spec.shmem_bytes, t);
}

double Guest::host_swapped_in_use(double t) const {
  return std::max(host_swapped_hot, host_swapped - std::max(0.0, resident - active(t)));
}

double Guest::cold_in_ram(double t) const {
  return std::max(0.0, resident - host_swapped - active(t));
}

double Guest::active(double t) const {
  const double ws =
      std::min(at(spec.file_working_set_bytes, t), static_cast<double>(spec.cache_limit_bytes));
  return std::min(balloon, unreclaimable(t) + anon + std::min(cache, ws));
}

World::World(HostSpec host, std::vector<GuestSpec> guests) : host_(std::move(host)) {
  for (auto& spec : guests) {
    Guest g;
    g.spec = std::move(spec);
    guests_.push_back(std::move(g));
  }
  squeeze_recovered_.assign(host_.squeezes.size(), -1);
}

void World::set_target(std::size_t index, std::uint64_t target, bool honour_floor) {
  Guest& g = guests_.at(index);
  if (!g.running) {
    return;
  }
  ++totals_.balloon_actions;
  const auto lowest = honour_floor ? g.spec.floor_bytes : bytes(g.unreclaimable(now_));
  g.pending_target =
      static_cast<double>(std::clamp(target, std::min(lowest, g.spec.max_bytes), g.spec.max_bytes));
  g.pending_at = now_ + host_.balloon_delay_s;
}

void World::set_free_page_reporting(bool on) {
  for (auto& g : guests_) {
    g.spec.free_page_reporting = on;
  }
}

double World::nonvm_bytes() const {
  double pinned = static_cast<double>(host_.overhead_bytes);
  for (const auto& s : host_.squeezes) {
    if (now_ >= s.start_s && now_ < s.start_s + s.duration_s) {
      pinned += static_cast<double>(s.bytes);
    }
  }
  return pinned;
}

double World::host_guest_ram_bytes() const {
  double sum = 0;
  for (const auto& g : guests_) {
    sum += g.running ? g.resident - g.host_swapped : 0;
  }
  return sum;
}

double World::host_swapped_bytes() const {
  double sum = 0;
  for (const auto& g : guests_) {
    sum += g.host_swapped;
  }
  return sum;
}

double World::host_free_bytes() const {
  return std::max(0.0, static_cast<double>(host_.ram_bytes) - nonvm_bytes() - host_cache_ -
                           host_guest_ram_bytes());
}

double World::host_available_bytes() const {
  const double watermark = kLowWatermarkShare * static_cast<double>(host_.ram_bytes);
  return std::max(0.0, host_free_bytes() + host_cache_ - watermark);
}

void World::step_balloon(Guest& g) {
  if (g.pending_target >= 0 && now_ > g.pending_at) {
    g.target = g.pending_target;
    g.pending_target = -1;
    g.refused = false;
  }
  if (g.target > g.balloon) {
    g.balloon = std::min(g.target, g.balloon + host_.balloon_deflate_bytes_per_s);
    return;
  }
  // Inflating: the guest gives free memory and page cache, and pushes anonymous memory to its
  // swap while there is room; it cannot give unreclaimable memory nor anonymous memory its swap
  // cannot take (the driver's allocations fail: the balloon stops short).
  const double demand = now_ < g.oom_until ? 0 : at(g.spec.demand_bytes, now_);
  const double unswappable = std::max(0.0, demand - static_cast<double>(g.spec.swap_bytes));
  double lowest = g.unreclaimable(now_) + unswappable + 16.0 * MiB;
  if (g.spec.virtio_mem_block_bytes > 0) {
    // Above the base memory the device unplugs whole blocks by moving pages, never to swap:
    // what the guest holds in RAM keeps its blocks plugged.
    const auto base = static_cast<double>(g.spec.virtio_mem_base_bytes);
    const auto block = static_cast<double>(g.spec.virtio_mem_block_bytes);
    const double held = g.unreclaimable(now_) + g.anon + 16.0 * MiB;
    if (held > base) {
      lowest = std::max(lowest, base + std::ceil((held - base) / block) * block);
    }
  }
  const double goal = std::max(g.target, std::min(lowest, g.balloon));
  g.balloon = std::max(goal, g.balloon - host_.balloon_inflate_bytes_per_s);
  if (g.balloon <= goal && goal > g.target + 1.0 * MiB && !g.refused) {
    g.refused = true;  // stuck short of this target: counted once
    ++totals_.refused_commands;
  }
}

void World::deflate_on_oom(Guest& g, double unreclaimable, double want) {
  double max = static_cast<double>(g.spec.max_bytes);
  if (g.spec.virtio_mem_block_bytes > 0) {
    // Only the balloon deflates by itself: up to the base memory plus the blocks still plugged.
    const auto base = static_cast<double>(g.spec.virtio_mem_base_bytes);
    const auto block = static_cast<double>(g.spec.virtio_mem_block_bytes);
    max = std::min(max, base + std::ceil(std::max(0.0, g.balloon - base) / block) * block);
  }
  if (g.spec.autodeflate && g.balloon < max) {
    const double lacking =
        unreclaimable + std::max(0.0, want - static_cast<double>(g.spec.swap_bytes)) - g.balloon;
    if (lacking > 0) {
      g.balloon = std::min(max, g.balloon + lacking + 1.0 * MiB);
      g.target = g.balloon;
      g.pending_target = -1;
    }
  }
}

void World::sample_stats(Guest& g, double room, double anon, double swapped) {
  const bool starving =
      now_ < g.oom_until || (g.spec.swap_bytes > 0 &&
                             swapped > kStarvingSwapShare * static_cast<double>(g.spec.swap_bytes));
  if (!starving && (g.stats_at < 0 || now_ - g.stats_at >= g.spec.stats_period_s)) {
    g.stats_at = now_;
    g.stats_cache = g.cache;
    g.stats_unused = std::max(0.0, room - anon - g.cache);
    g.stats_usable = g.stats_unused + g.cache;
    g.stats_swap_in = g.swap_in_total;
    g.stats_swap_out = g.swap_out_total;
    g.stats_major_faults = g.major_faults_total;
  }
}

void World::step_guest(Guest& g) {
  step_balloon(g);
  const double unreclaimable = g.unreclaimable(now_);
  const bool restarting = now_ < g.oom_until;
  const double want = restarting ? 0 : at(g.spec.demand_bytes, now_);
  if (restarting) {
    // A killed workload's work is lost until it is back: what it would hold now is lost work,
    // and its guest is short of memory for the whole restart.
    totals_.lost_work_byte_seconds += at(g.spec.demand_bytes, now_);
  }
  deflate_on_oom(g, unreclaimable, want);
  const double room = std::max(0.0, g.balloon - unreclaimable);

  // Anonymous memory: what fits is held, the rest goes to the guest's swap; beyond that, an OOM.
  double anon = std::min(want, room);
  double swapped = want - anon;
  // An OOM kill (or, when unreclaimable memory alone does not fit, a panic) stops the workload
  // until it restarts; one is counted per restart.
  if (swapped > static_cast<double>(g.spec.swap_bytes) || unreclaimable > g.balloon) {
    if (now_ >= g.oom_until) {
      ++totals_.guest_ooms;
      g.oom_until = now_ + kOomRestartSeconds;
    }
    anon = swapped = 0;
  }
  const double thrash = std::min(swapped, kThrashBytesPerS);
  const double out = std::max(0.0, swapped - g.swapped) + thrash;
  const double in = std::max(0.0, g.swapped - swapped) + thrash;
  g.swap_out_total += out;
  g.swap_in_total += in;
  g.major_faults_total += in / 4096;
  g.pages_in_now = in / 4096;
  totals_.guest_swap_out_bytes += std::max(0.0, swapped - g.swapped);
  g.anon = anon;
  g.swapped = swapped;

  // Page cache gives way to anonymous memory and to the balloon, and refills free memory up to
  // the file data the workload has read. The working set that is not cached is re-read.
  // A page re-read lands in the cache like any read, so a guest with free memory caches its
  // working set again as fast as it re-reads it.
  const double free_for_cache = room - anon;
  g.cache = std::min(g.cache, free_for_cache);
  const double ws = std::min(at(g.spec.file_working_set_bytes, now_),
                             static_cast<double>(g.spec.cache_limit_bytes));
  const double refault = std::max(0.0, ws - g.cache) / kWorkingSetRereadSeconds;
  const double cached_before = g.cache;
  g.cache = std::min(g.cache + g.spec.cache_fill_bytes_per_s + refault,
                     std::min(static_cast<double>(g.spec.cache_limit_bytes), free_for_cache));
  g.evicted = std::max(0.0, ws - g.cache);
  // Read from disk: the re-reads, and the first reads the cache grew by beyond them.
  g.disk_read_total += refault + std::max(0.0, g.cache - cached_before - refault);
  g.major_faults_total += refault * g.spec.mapped_read_share / 4096;
  g.pages_in_now += refault / 4096;
  totals_.refault_bytes += refault;
  totals_.evicted_byte_seconds += g.evicted;

  // Short of what it uses: restarting after an OOM kill, swapped, re-reading its working set, or
  // waiting on host swap-in.
  const bool host_swap_wait = g.host_swapped_in_use(now_) > 1.0 * MiB;
  if (restarting || swapped > 0 || g.evicted > 16.0 * MiB || host_swap_wait) {
    totals_.guest_pressure_seconds += 1;
  }

  // Host residency: touched pages stay until the balloon takes them back or, with free page
  // reporting, until the guest reports them free.
  const double touched = unreclaimable + anon + g.cache;
  if (g.spec.free_page_reporting && g.resident > touched) {
    g.resident = touched + (g.resident - touched) * std::exp(-1.0 / kFreePageReportingSeconds);
  }
  g.resident = std::min(g.balloon, std::max(g.resident, std::min(touched, g.balloon)));
  g.host_swapped = std::min(g.host_swapped, g.resident);
  g.host_swapped_hot = std::min(g.host_swapped_hot, g.host_swapped);

  sample_stats(g, room, anon, swapped);
}

double World::swap_in_used_pages() {
  double swap_in = 0;
  for (auto& g : guests_) {
    if (!g.running || g.host_swapped <= 0) {
      continue;
    }
    const double back = std::min(g.host_swapped_in_use(now_) * kHostSwapInShare,
                                 std::max(0.0, kSwapBandwidthBytesPerS - swap_in));
    g.host_swapped -= back;
    g.host_swapped_hot = std::max(0.0, std::min(g.host_swapped_hot - back, g.host_swapped));
    swap_in += back;
  }
  return swap_in;
}

double World::reclaim_to_watermark(double free, double watermark, double swap_in) {
  double need = 2 * watermark - free;
  const double swap_share = std::clamp(host_.swappiness / 200.0, 0.0, 1.0);
  const double from_cache = std::min(host_cache_, need * (1 - swap_share));
  host_cache_ -= from_cache;
  need -= from_cache;
  const double swap_room =
      std::max(0.0, static_cast<double>(host_.swap_bytes) - host_swapped_bytes());
  const double to_swap =
      std::min({need, swap_room, std::max(0.0, kSwapBandwidthBytesPerS - swap_in)});
  // By LRU age: cold guest pages mostly, pages the guest uses a little (kHotEvictionWeight);
  // once the cold ones are gone, pages in use.
  double cold_total = 0;
  double hot_total = 0;
  for (const auto& g : guests_) {
    if (g.running) {
      const double cold = g.cold_in_ram(now_);
      cold_total += cold;
      hot_total += g.resident - g.host_swapped - cold;
    }
  }
  const double weighted = cold_total + kHotEvictionWeight * hot_total;
  const bool cold_suffices = to_swap <= weighted;
  const double cold_share = weighted <= 0 ? 0 : cold_suffices ? to_swap / weighted : 1;
  const double hot_share = cold_suffices
                               ? kHotEvictionWeight * cold_share
                               : std::min(1.0, (to_swap - cold_total) / std::max(1.0, hot_total));
  double swap_out = 0;
  for (auto& g : guests_) {
    if (!g.running) {
      continue;
    }
    const double cold = g.cold_in_ram(now_);
    const double take_cold = cold * cold_share;
    const double take_hot = (g.resident - g.host_swapped - cold) * hot_share;
    g.host_swapped += take_cold + take_hot;
    g.host_swapped_hot += take_hot;
    swap_out += take_cold + take_hot;
    totals_.host_hot_swap_out_bytes += take_hot;
  }
  return swap_out;
}

void World::account_pressure(double swap_in, double swap_out) {
  // Memory PSI: tasks wait on swap-in, and on reclaim while below the watermark.
  const double some = std::min(1.0, swap_in / kStallingSwapInRate + (swap_out > 0 ? 0.1 : 0.0));
  const double full = some / 2;
  psi_some_total_s_ += some;
  psi_full_total_s_ += full;
  const double decay = 1 - std::exp(-1.0 / 10.0);
  psi_some_avg10_ += (some - psi_some_avg10_) * decay;
  psi_full_avg10_ += (full - psi_full_avg10_) * decay;
  // memtided's PSI trigger (daemon/src/pressure_trigger.cpp): 150 ms of stall in a 2 s window,
  // and the kernel signals at most once per window.
  constexpr double kTriggerStallS = 0.15;
  constexpr double kTriggerWindowS = 2;
  pressure_event_ = psi_some_last_s_ + some >= kTriggerStallS &&
                    now_ - last_pressure_event_ >= kTriggerWindowS - 1e-9;
  if (pressure_event_) {
    last_pressure_event_ = now_;
  }
  psi_some_last_s_ = some;
}

void World::step_host() {
  const double ram = static_cast<double>(host_.ram_bytes);
  const double watermark = kLowWatermarkShare * ram;
  double free = ram - nonvm_bytes() - host_cache_ - host_guest_ram_bytes();
  // Pages swapped back in take host RAM (the kernel finds room for them, by reclaim if it must).
  const double swap_in = swap_in_used_pages();
  free -= swap_in;
  double swap_out = 0;
  if (free < watermark) {
    swap_out = reclaim_to_watermark(free, watermark, swap_in);
  } else if (free > 2 * watermark) {
    host_cache_ =
        std::min({static_cast<double>(host_.cache_limit_bytes),
                  host_cache_ + kHostCacheFillBytesPerS, host_cache_ + free - 2 * watermark});
  }
  swap_out_now_ = swap_out;
  host_swap_out_total_ += swap_out + host_.swap_trickle_bytes_per_s;
  host_swap_in_total_ += swap_in + host_.swap_trickle_bytes_per_s / 4;
  totals_.host_swap_out_bytes += swap_out;
  totals_.host_swap_in_bytes += swap_in;
  account_pressure(swap_in, swap_out);
}

void World::step() {
  now_ += 1;
  double ballooned = 0;
  for (auto& g : guests_) {
    if (!g.running && now_ >= g.spec.start_s) {
      g.running = true;
      g.balloon = static_cast<double>(g.spec.max_bytes);
      if (g.target <= 0) {
        g.target = g.balloon;
      }
      // A guest starts with its file working set cached (it has read it while booting).
      g.cache = std::min({at(g.spec.file_working_set_bytes, now_),
                          static_cast<double>(g.spec.cache_limit_bytes),
                          std::max(0.0, g.balloon - g.unreclaimable(now_)) / 2});
      g.resident = g.unreclaimable(now_) + g.cache;
    }
    if (g.running) {
      step_guest(g);
      ballooned += static_cast<double>(g.spec.max_bytes) - g.balloon;
    }
  }
  step_host();
  totals_.ballooned_byte_seconds += ballooned;
  totals_.seconds += 1;
  const double available = host_available_bytes();
  totals_.min_available_bytes = totals_.min_available_bytes < 0
                                    ? available
                                    : std::min(totals_.min_available_bytes, available);
  account_long_rereads(available);
  for (std::size_t i = 0; i < host_.squeezes.size(); ++i) {
    const auto& s = host_.squeezes[i];
    if (now_ >= s.start_s && squeeze_recovered_[i] < 0) {
      if (available >= static_cast<double>(host_.reserve_bytes)) {
        squeeze_recovered_[i] = now_;
      } else {
        totals_.reserve_recovery_seconds += 1;
      }
    }
  }
}

void World::account_long_rereads(double available) {
  const bool host_has_reserve = available >= static_cast<double>(host_.reserve_bytes);
  for (auto& g : guests_) {
    if (!g.running || !host_has_reserve || g.pages_in_now <= kLongRereadPagesPerS) {
      g.rereading_since = -1;
      continue;
    }
    if (g.rereading_since < 0) {
      g.rereading_since = now_;
    }
    if (now_ - g.rereading_since >= kLongRereadSeconds) {
      totals_.long_reread_seconds += 1;
    }
  }
}

Snapshot World::snapshot() const {
  Snapshot s;
  const auto now_ms = static_cast<std::int64_t>(std::llround(now_ * 1000));
  s.collected_at_unix_ms = kEpochMs + now_ms;
  s.monotonic_ms = now_ms;
  auto& m = s.host.meminfo;
  m.total_bytes = host_.ram_bytes;
  m.available_bytes = bytes(host_available_bytes());
  m.free_bytes = bytes(host_free_bytes());
  m.cached_bytes = bytes(host_cache_);
  m.swap_total_bytes = host_.swap_bytes;
  m.swap_free_bytes =
      bytes(std::max(0.0, static_cast<double>(host_.swap_bytes) - host_swapped_bytes()));
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
    vm.stats_period_s = static_cast<std::uint32_t>(g.spec.stats_period_s);
    vm.balloon_autodeflate = g.spec.autodeflate;
    vm.balloon_free_page_reporting = g.spec.free_page_reporting;
    vm.max_bytes = g.spec.max_bytes;
    vm.current_bytes = bytes(g.balloon);
    vm.metadata.shares = g.spec.shares;
    // The operator's floor reaches memtided as domain metadata (<memtide:policy floor=.../>), as
    // Proxmox's per-VM minimum reaches pvestatd: every policy sees the same floor.
    vm.metadata.floor = SizeOrRatio{g.spec.floor_bytes};
    if (g.stats_at >= 0) {
      const double age = now_ - g.stats_at;
      vm.stats_status = age > std::max(10.0, 3 * g.spec.stats_period_s) ? GuestStatsStatus::stale
                                                                        : GuestStatsStatus::ok;
      vm.guest.total_bytes = vm.current_bytes;
      vm.guest.usable_bytes = bytes(g.stats_usable);
      vm.guest.unused_bytes = bytes(g.stats_unused);
      vm.guest.disk_caches_bytes = bytes(g.stats_cache);
      vm.guest.swap_out_bytes_total = bytes(g.stats_swap_out);
      vm.guest.swap_in_bytes_total = bytes(g.stats_swap_in);
      vm.guest.major_faults_total = bytes(g.stats_major_faults);
      vm.guest.last_update_unix_s =
          (kEpochMs + static_cast<std::int64_t>(std::llround(g.stats_at * 1000))) / 1000;
    } else {
      vm.stats_status = GuestStatsStatus::no_driver;
    }
    if (g.spec.virtio_mem_block_bytes > 0) {
      // The device's share of the size as the actuator splits it: whole blocks above the base.
      const auto base = static_cast<double>(g.spec.virtio_mem_base_bytes);
      const auto block = static_cast<double>(g.spec.virtio_mem_block_bytes);
      const auto plugged = bytes(std::ceil(std::max(0.0, g.balloon - base) / block) * block);
      const double target = g.target > 0 ? g.target : g.balloon;
      const auto requested = bytes(std::ceil(std::max(0.0, target - base) / block) * block);
      const std::uint64_t size = g.spec.max_bytes - g.spec.virtio_mem_base_bytes;
      vm.virtio_mem = {VirtioMemDevice{"virtiomem0", 0, g.spec.virtio_mem_block_bytes, size,
                                       requested, plugged, size}};
    }
    vm.host_rss_bytes = bytes(g.resident - g.host_swapped);
    // Block statistics are live (QEMU's counters): asked with every snapshot here.
    vm.disk_read_bytes_total = bytes(g.disk_read_total);
    vm.disk_reads_at_ms = now_ms;
    // The QEMU process as the host sees it: VmRSS and VmSwap.
    vm.process = QemuProcess{0, vm.host_rss_bytes, bytes(g.host_swapped), std::nullopt};
    s.vms.push_back(std::move(vm));
  }
  std::sort(s.vms.begin(), s.vms.end(),
            [](const VmSample& a, const VmSample& b) { return a.name < b.name; });
  return s;
}

}  // namespace memtide::sim

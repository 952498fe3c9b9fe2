// decide() as a pipeline of named rules, each a function of what the ones before it worked out:
//
//   assess_host -> consider_guests -> fund_guests_in_need -> relieve_host -> give_back_when_idle
//     -> make_commands -> raise_alerts -> (KSM: decide_ksm)
//
// The rules share the per-VM Candidate records; a rule that changes a VM's balloon says why
// (cause and reason) where it grants or takes the memory.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <unordered_map>

#include <memtide/config/units.hpp>
#include <memtide/policy/classes.hpp>
#include <memtide/policy/coexist.hpp>
#include <memtide/policy/engine.hpp>
#include <memtide/policy/ksm.hpp>
#include <memtide/policy/rates.hpp>

#include "text.hpp"

namespace memtide::policy {

const char* to_string(Cause cause) {
  switch (cause) {
    case Cause::guest_need:
      return "guest-need";
    case Cause::funding:
      return "funding";
    case Cause::host_pressure:
      return "host-pressure";
    case Cause::swap_forecast:
      return "swap-forecast";
    case Cause::squeeze:
      return "squeeze";
    case Cause::stale:
      return "stale";
    case Cause::host_idle:
      return "host-idle";
    case Cause::limits:
      return "limits";
  }
  return "?";
}

const char* to_string(Severity severity) {
  return severity == Severity::critical ? "critical" : "warning";
}

const char* to_string(HostLevel level) {
  switch (level) {
    case HostLevel::ok:
      return "ok";
    case HostLevel::heading:
      return "heading";
    case HostLevel::tight:
      return "tight";
    case HostLevel::critical:
      return "critical";
  }
  return "?";
}

namespace {

using config::format_size;

// Tick length assumed on the first tick, when there is no previous one to measure.
constexpr double kDefaultTickSeconds = 10.0;
// A guest's statistics timestamp is compared with the time of its last balloon change only when
// it is younger than this: the collector calls statistics stale long before, so an older one is
// from another clock.
constexpr std::int64_t kComparableStatsAgeMs = 10LL * 60 * 1000;
// A balloon given this long to reach a shrink target and still short of it is refusing.
constexpr std::int64_t kBalloonSettleMs = 10'000;

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.1f s" : "%.0f s", s);
  return buf;
}

std::string rate_text(double bytes_per_second) {
  return format_size(static_cast<std::uint64_t>(bytes_per_second)) + "/s";
}

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

std::uint64_t above(std::uint64_t value, std::uint64_t keep) {
  return value > keep ? value - keep : 0;
}

// "38% usable, target 15%", or "no fresh statistics" for a guest judged blind.
std::string guest_status(const Outcome& o) {
  if (o.blind) {
    return "no fresh statistics";
  }
  return percent(static_cast<double>(o.usable_bytes) / static_cast<double>(o.current_bytes)) +
         " usable, target " + percent(o.guest_free_ratio);
}

// --- Rule 1: assess the host.

// What decide() works out about the host before looking at any guest.
struct HostView {
  std::uint64_t total = 0;
  std::uint64_t available = 0;
  std::uint64_t reserve = 0;
  std::uint64_t deficit = 0;  // reserve - available, or 0
  double tick_s = 0;          // since the previous tick; 0 on the first
  double horizon_s = 0;
  double swap_out_rate = 0;
  double swap_in_rate = 0;
  std::uint64_t swap_used = 0;
  bool swapping = false;     // swap-out at swap_rate or more, corroborated (see the config)
  bool paying_back = false;  // swap-in at swap_rate or more while swap is in use
  double psi_some = 0;
  double psi_full = 0;
  bool psi_some_high = false;
  bool psi_full_high = false;
  bool forecast = false;  // swap predicted within the horizon (warned about)
  bool heading = false;   // ... and near the swap point (acted on)
  HostLevel level = HostLevel::ok;
  std::string reason;  // why the host is not ok ("" when it is)
  double pacing_tick_s() const { return tick_s > 0 ? tick_s : kDefaultTickSeconds; }
  bool below_reserve() const { return deficit > 0; }
  // MemAvailable within kForecastActsBelowReserveFactor x the reserve: close enough to the swap
  // point that a forecast, or a stall while swap is paid back, is a shortage worth acting on.
  bool near_swap_point() const {
    return static_cast<double>(available) <=
           kForecastActsBelowReserveFactor * static_cast<double>(reserve);
  }
  bool pressed() const { return level == HostLevel::tight || level == HostLevel::critical; }
};

// Rates since the previous tick, PSI, and whether the host swaps or pays swap back.
void measure_host_rates(HostView& h, const HostSample& host, const PolicyState& next,
                        const config::HostSection& cfg, std::int64_t now_ms) {
  h.tick_s = next.previous_host && now_ms > next.previous_host_ms
                 ? static_cast<double>(now_ms - next.previous_host_ms) / 1000.0
                 : 0;
  const HostRates rates =
      h.tick_s > 0 ? derive_rates(*next.previous_host, host, h.tick_s) : HostRates{};
  h.swap_out_rate = rates.swap_out_bytes_per_second;
  h.swap_in_rate = rates.swap_in_bytes_per_second;
  h.swap_used = above(host.meminfo.swap_total_bytes, host.meminfo.swap_free_bytes);
  // PSI counts as the kernel's avg10 or the exact stall share since the last tick, whichever is
  // higher: avg10 lags a sudden stall by seconds.
  h.psi_some = std::max(host.psi_memory ? host.psi_memory->some.avg10_ratio : 0,
                        rates.psi_memory_some_stall_ratio);
  h.psi_full =
      std::max(host.psi_memory && host.psi_memory->full ? host.psi_memory->full->avg10_ratio : 0,
               rates.psi_memory_full_stall_ratio);
  const auto swap_rate = static_cast<double>(cfg.pressure.swap_rate_bytes_per_second);
  h.paying_back = h.swap_in_rate >= swap_rate && h.swap_used > 0;
  // A stall with MemAvailable well above the reserve is not a shortage a balloon could relieve:
  // it comes from swap being paid back (the swap-ins themselves), a cgroup at its own limit, or
  // a process's own I/O, and shrinking guests would only evict what they use. It counts as host
  // pressure only near the swap point.
  const bool stall_counts = h.near_swap_point();
  h.psi_some_high = stall_counts && h.psi_some > cfg.pressure.psi_some_avg10_ratio;
  h.psi_full_high = stall_counts && h.psi_full > cfg.pressure.psi_full_avg10_ratio;
  // Swap-out counts only at a real rate and with the host short of memory: a trickle, or a
  // cgroup swapping at its own limit while MemAvailable is plentiful, is not host pressure.
  h.swapping = h.swap_out_rate >= swap_rate &&
               (h.below_reserve() || h.heading || h.psi_some_high || h.psi_full_high);
}

HostLevel host_level(const HostView& h) {
  // At the kernel's watermarks (about 1 % of memory) the host swaps within a tick.
  const auto swap_point =
      static_cast<std::uint64_t>(2 * kSwapPointRatio * static_cast<double>(h.total));
  if (h.swapping || h.psi_full_high || (h.below_reserve() && h.psi_some_high) ||
      (h.total > 0 && h.available <= swap_point)) {
    return HostLevel::critical;
  }
  if (h.below_reserve() || h.psi_some_high) {
    return HostLevel::tight;
  }
  return h.heading ? HostLevel::heading : HostLevel::ok;
}

// Why the host is not ok, for the log and status ("" when it is).
std::string host_reason(const HostView& h, const config::HostSection& cfg, const Plan& plan) {
  std::string reason;
  auto add = [&reason](const std::string& r) { reason += (reason.empty() ? "" : ", ") + r; };
  if (h.below_reserve()) {
    add("host MemAvailable " + format_size(h.available) + " < reserve " + format_size(h.reserve));
  }
  if (h.swapping) {
    add("host swapping out " + rate_text(h.swap_out_rate));
  }
  if (h.psi_full_high) {
    add("memory PSI full " + percent(h.psi_full) + " > " +
        percent(cfg.pressure.psi_full_avg10_ratio));
  }
  if (h.psi_some_high) {
    add("memory PSI some " + percent(h.psi_some) + " > " +
        percent(cfg.pressure.psi_some_avg10_ratio));
  }
  if (h.heading) {
    add(std::string(plan.forecast.cliff ? "MemAvailable fell off a cliff: " : "") +
        "swap predicted in " + seconds_text(*plan.forecast.seconds_to_swap) + " < " +
        seconds_text(h.horizon_s));
  }
  return reason;
}

// The host's line in status: its reason, or why it is fine; and any swap being paid back.
std::string host_summary(const HostView& h, const config::HostSection& cfg) {
  std::string summary = h.reason;
  if (summary.empty()) {
    summary = "host fine: MemAvailable " + format_size(h.available) + ", reserve " +
              format_size(h.reserve);
    const auto swap_rate = static_cast<double>(cfg.pressure.swap_rate_bytes_per_second);
    if (h.swap_out_rate > 0) {
      summary += "; swap-out " + rate_text(h.swap_out_rate) + " is not host pressure (" +
                 (h.swap_out_rate < swap_rate ? "below swap_rate " + rate_text(swap_rate)
                                              : std::string("MemAvailable is ample")) +
                 ")";
    }
  }
  if (h.paying_back) {
    summary += "; paying back swap: " + rate_text(h.swap_in_rate) + " swapped in, " +
               format_size(h.swap_used) + " in swap";
  }
  return summary;
}

HostView assess_host(const Snapshot& snapshot, PolicyState& next, const config::Config& config,
                     std::int64_t now_ms, Plan& plan) {
  const auto& host = snapshot.host;
  const auto& cfg = config.host;
  HostView h;
  h.total = host.meminfo.total_bytes;
  h.available = host.meminfo.available_bytes;
  h.reserve = cfg.reserve_bytes;
  h.deficit = above(h.reserve, h.available);
  h.horizon_s = static_cast<double>(cfg.swap_forecast.horizon.count()) / 1000.0;

  add_forecast_point(next.available_history, now_ms, h.available, cfg.swap_forecast.window.count());
  plan.forecast = forecast_swap(next.available_history, h.total);
  h.forecast = plan.forecast.seconds_to_swap && *plan.forecast.seconds_to_swap < h.horizon_s;
  h.heading = h.forecast && h.near_swap_point();
  measure_host_rates(h, host, next, cfg, now_ms);
  h.level = host_level(h);
  h.reason = host_reason(h, cfg, plan);
  plan.host_summary = host_summary(h, cfg);
  plan.host_level = h.level;
  plan.host_pressure = h.pressed();
  plan.host_heading = h.heading;
  plan.host_paying_back = h.paying_back;
  return h;
}

// --- Rule 2: consider every guest.

// Everything decide() works out about one managed VM before dividing memory.
struct Candidate {
  const VmSample* vm = nullptr;
  EffectiveBalloon settings;
  std::uint64_t usable = 0;       // usable memory (page cache counts as usable)
  std::uint64_t in_use = 0;       // balloon size - usable
  std::uint64_t target_free = 0;  // usable memory the class wants it to keep
  std::uint64_t ideal = 0;        // the size at which it keeps exactly target_free
  std::uint64_t comfort = 0;      // the size at which it keeps kComfortFactor * target_free
  std::uint64_t burst = 0;        // headroom kept for a rise it has shown recently
  double in_use_rate = 0;         // bytes/s its in-use memory grew since the last tick
  bool needs = false;             // short, falling short by the next tick, swapping or faulting
  bool distress = false;          // below half its free target, or swapping
  bool guest_swapping = false;
  bool faulting = false;         // re-reading (major faults, risen disk reads) near its target
  bool settling = false;         // statistics predate its last balloon change
  bool protected_cache = false;  // its working set showed in faults after a shrink
  // Its major faults, or its disk reads, rose after its last shrink: the shrink evicted what it
  // reads (re-reads through read() are no major faults; disk reads count as re-reads only so).
  bool faults_rose = false;
  bool reads_rose = false;
  // Re-reading above kGuestMajorFaultsPerSecond since either rose, outside a critical host: the
  // shrink took page cache the guest uses, which is not spare at any share it has left (only the
  // host's survival may take it). It is given back what the shrinks took, from the reserve's
  // upper quarter if need be, and its cache is held for cache_protection.
  bool rereading_evicted = false;
  bool keeps_burst_room = false;  // spare held back: it cannot rescue itself from a burst
  bool blind = false;             // statistics stale: may only grow, funded by host room
  double major_faults_per_s = 0;
  double disk_reads_per_s = 0;          // bytes/s
  std::uint64_t want = 0;               // growth it asks for this tick (step-limited)
  std::uint64_t spare = 0;              // what it can give under host pressure
  std::uint64_t comfortable_spare = 0;  // what it can give to guests in need outside pressure
  // comfortable_spare before hysteresis or a refusing balloon held it back: what the host could
  // get from this guest without pressing it (Plan::reclaimable_bytes).
  std::uint64_t reclaimable = 0;
  std::uint64_t squeeze_room = 0;  // what it can give when the host is critical
  // What it can give a guest in distress: its spare without the burst room it keeps because it
  // cannot rescue itself (a real need comes before room for a burst that may never come).
  std::uint64_t rescue_room = 0;
  // With free page reporting: the part of its size not resident on the host (its free pages,
  // handed back already). Shrinking it frees host memory only beyond this: reclaim counts a
  // take by what it frees, and reclaimable leaves it out.
  std::uint64_t unresident = 0;
  std::uint64_t granted = 0;         // growth granted this tick
  bool held_by_hysteresis = false;   // had spare, but grew within its hysteresis
  std::uint64_t below_deadband = 0;  // a take reclaim skipped as smaller than the deadband
  std::int64_t delta = 0;            // decided change this tick
  Cause cause = Cause::guest_need;
  // Reason for the change: shared reasons (host pressure) are not copied per VM; when null the
  // VM's own reason (own_why) is formatted, and only if a command results.
  const std::string* why = nullptr;
  enum class OwnWhy : std::uint8_t {
    none,
    stale,
    swapping,
    faulting,
    falling,
    short_of_memory,
    host_idle
  };
  OwnWhy own_why = OwnWhy::none;
  PolicyState::Vm* memory = nullptr;  // its entry in the next state
  std::size_t outcome = 0;            // its entry in plan.outcomes
};

std::uint64_t step_limit(const Candidate& c, std::uint64_t amount) {
  return c.settings.max_step_bytes > 0 ? std::min(amount, c.settings.max_step_bytes) : amount;
}

// The last command's target while the balloon is still on its way to it, between where the
// command started and its target (libvirt reports the size with a lag, a guest frees pages over
// seconds). A balloon outside that span was resized by someone else (virsh setmem, the safety
// net's restore after a crash): that command is over, and taking its target for one in flight
// would stretch the next step past max_step. A command whose start is unknown (a state file
// written before it was recorded) is over too.
std::optional<std::uint64_t> in_flight_target(const PolicyState::Vm& memory,
                                              std::uint64_t current) {
  if (memory.last_direction == 0 || !memory.last_target_bytes || !memory.last_from_bytes) {
    return std::nullopt;
  }
  const auto [low, high] = std::minmax(*memory.last_from_bytes, *memory.last_target_bytes);
  if (current < low || current > high) {
    return std::nullopt;
  }
  return memory.last_target_bytes;
}

double usable_share(const Candidate& c) {
  return static_cast<double>(c.usable) / static_cast<double>(c.vm->current_bytes);
}

std::string own_reason(const Candidate& c, std::uint64_t host_available) {
  switch (c.own_why) {
    case Candidate::OwnWhy::stale:
      return "guest statistics stale (a starving guest may stop reporting): one step back toward "
             "its maximum, which cannot hurt it";
    case Candidate::OwnWhy::swapping:
    case Candidate::OwnWhy::short_of_memory:
      return std::string(c.own_why == Candidate::OwnWhy::swapping ? "guest is swapping"
                                                                  : "guest short of memory") +
             ": " + percent(usable_share(c)) + " usable, target " +
             percent(c.settings.guest_free_ratio);
    case Candidate::OwnWhy::falling:
      return "guest taking memory fast (" + rate_text(c.in_use_rate) +
             "): " + percent(usable_share(c)) + " usable, below its target " +
             percent(c.settings.guest_free_ratio) + " by the next tick at this pace";
    case Candidate::OwnWhy::faulting:
      return (c.rereading_evicted || (c.reads_rose && c.disk_reads_per_s > 0)
                  ? "guest is re-reading what a shrink evicted (" +
                        std::to_string(std::llround(c.major_faults_per_s)) + " major faults/s, " +
                        rate_text(c.disk_reads_per_s) + " read from disk)"
                  : "guest is faulting pages in (" +
                        std::to_string(std::llround(c.major_faults_per_s)) + " major faults/s)") +
             " at " + percent(usable_share(c)) + " usable, target " +
             percent(c.settings.guest_free_ratio);
    case Candidate::OwnWhy::host_idle:
      return "host has room (" + format_size(host_available) +
             " available): memory given back toward the maximum";
    case Candidate::OwnWhy::none:
      break;
  }
  return "";
}

// The guest's usable memory: never MemFree alone, page cache is reclaimable. Guests that do not
// report "usable" (older drivers) are judged by free + page cache. nullopt: neither is reported.
std::optional<std::uint64_t> usable_memory(const VmSample& vm) {
  if (vm.guest.usable_bytes) {
    return vm.guest.usable_bytes;
  }
  if (vm.guest.unused_bytes) {
    return saturating_add(*vm.guest.unused_bytes, vm.guest.disk_caches_bytes.value_or(0));
  }
  return std::nullopt;
}

// Free page reporting returns a guest's free pages to the host by itself: the host then holds
// only what the QEMU process has resident or in swap (VmRSS + VmSwap), and shrinking the guest
// frees only what it takes beyond the rest. Judging from the guest's free figures alone would
// count that memory twice: once as the host's, once as the guest's to give. Without free page
// reporting, or without the process's figures, nothing changes.
void discount_unresident(const VmSample& vm, Candidate& c) {
  if (!vm.balloon_free_page_reporting.value_or(false) || !vm.process || !vm.process->rss_bytes) {
    return;
  }
  const std::uint64_t held =
      saturating_add(*vm.process->rss_bytes, vm.process->swap_bytes.value_or(0));
  c.unresident = above(vm.current_bytes, held);
  c.reclaimable = above(c.reclaimable, c.unresident);
}

// Seconds over which a change in a guest's figures came about: between the two reports they
// come from, when both times are known and differ, else between the two ticks. A guest reports
// once a statistics period, which can be longer than a tick (a tick brought forward by pressure,
// a period above daemon.interval): over one tick, a period's change would read up to
// period/tick times too fast, and a guest that merely reads from disk would seem to thrash.
double change_interval_s(std::optional<std::int64_t> report_before_s,
                         std::optional<std::int64_t> report_now_s, std::int64_t tick_before_ms,
                         std::int64_t tick_now_ms) {
  // In double: the times come from guests and files, and their difference must not overflow.
  if (report_before_s && report_now_s && *report_now_s > *report_before_s) {
    return static_cast<double>(*report_now_s) - static_cast<double>(*report_before_s);
  }
  return (static_cast<double>(tick_now_ms) - static_cast<double>(tick_before_ms)) / 1000.0;
}

// At most a quarter of its maximum is held back for bursts: a guest that once touched all its
// memory (booting, a one-off job) must not be exempt from reclaim for the next half hour.
std::uint64_t burst_room(const Candidate& c) {
  return static_cast<std::uint64_t>(kSelfRescueHeadroomShare *
                                    static_cast<double>(c.settings.max_bytes));
}

// The usable share a guest is grown to, and outside host pressure shrunk to: a comfort point
// above the free target, so a guest needs its usable share to drift by a quarter of the target
// before it is resized again (without this band a guest hovering at its target would be resized
// on every drift, back and forth through the guests that fund it).
double comfort_ratio(const EffectiveBalloon& settings) {
  const double g = settings.guest_free_ratio;
  return std::min(kComfortFactor * g, (1.0 + g) / 2);
}

// The size at which a guest using `in_use` bytes keeps `share` of it usable, within its limits.
std::uint64_t size_keeping(const EffectiveBalloon& settings, double in_use, double share) {
  return std::clamp(static_cast<std::uint64_t>(in_use / (1.0 - share)), settings.floor_bytes,
                    settings.max_bytes);
}

// Whether the statistics predate the last balloon change: then they describe a guest of another
// size, and judging spare memory from them overstates it (a shrunk guest still shows its old free
// memory). The timestamp has whole seconds: one in the second of the change counts as older. One
// far older than now comes from another clock (libvirt's test driver reports a fixed date) and
// says nothing about the order.
bool settling(const VmSample& vm, const PolicyState::Vm& memory, std::int64_t collected_unix_ms) {
  const auto& updated_s = vm.guest.last_update_unix_s;
  // (In double: neither time may overflow the sums, whatever a guest or a state file said.)
  return updated_s && memory.last_change_unix_ms > 0 &&
         static_cast<double>(*updated_s) <
             std::ceil(static_cast<double>(memory.last_change_unix_ms) / 1000.0) &&
         static_cast<double>(collected_unix_ms) - static_cast<double>(*updated_s) * 1000.0 <
             static_cast<double>(kComparableStatsAgeMs);
}

// Trend and burst, from in-use memory (which a balloon change does not move): the rate it grew
// at since the last report, and the largest rise of the last kBurstMemoryMs.
void follow_in_use(Candidate& c, PolicyState::Vm& memory, std::int64_t now_ms) {
  const VmSample& vm = *c.vm;
  if (!c.settling) {
    if (memory.in_use_bytes && now_ms > memory.sampled_ms) {
      const double dt = change_interval_s(memory.in_use_report_unix_s, vm.guest.last_update_unix_s,
                                          memory.sampled_ms, now_ms);
      const auto before = static_cast<double>(*memory.in_use_bytes);
      c.in_use_rate = (static_cast<double>(c.in_use) - before) / dt;
      if (now_ms - memory.burst_ms > kBurstMemoryMs) {
        memory.burst_bytes = 0;
      }
      const std::uint64_t rise = above(c.in_use, *memory.in_use_bytes);
      if (rise > memory.burst_bytes) {
        memory.burst_bytes = rise;
        memory.burst_ms = now_ms;
      }
    }
    memory.in_use_bytes = c.in_use;
    memory.in_use_report_unix_s = vm.guest.last_update_unix_s;
  }
  c.burst = std::min(memory.burst_bytes, burst_room(c));
}

// Whether the guest needs memory now (short, falling short by the next tick, swapping, or
// re-reading what it evicted), how badly, and what growth it asks for.
void judge_need(Candidate& c, const HostView& host) {
  const VmSample& vm = *c.vm;
  const EffectiveBalloon& settings = c.settings;
  const double g = settings.guest_free_ratio;
  const double g_comfort = comfort_ratio(settings);
  // Page-ins at a high rate while the guest is inside its comfort band, or has little memory
  // free beside its page cache, mean its working set no longer fits (it is re-reading what it
  // just evicted; usable memory that is all cache in use is not spare): give it memory. With
  // plenty free, faults are only first reads, unless they rose after a shrink: then they are
  // re-reads whatever its usable share (a guest whose memory is mostly a cached hot set shows a
  // roomy share while it re-reads the part a shrink took).
  // Disk reads count as re-reads only once they rose after a shrink: a guest streaming a file
  // reads as much whatever its size.
  const bool little_free = vm.guest.unused_bytes && *vm.guest.unused_bytes < c.target_free;
  const double rereads_per_s =
      c.major_faults_per_s + (c.reads_rose ? c.disk_reads_per_s / kGuestPageBytes : 0);
  const bool rereading = rereads_per_s > kGuestMajorFaultsPerSecond;
  c.rereading_evicted =
      rereading && (c.faults_rose || c.reads_rose) && host.level != HostLevel::critical;
  const bool faulting_by_share =
      rereading &&
      (static_cast<double>(c.usable) < g_comfort * static_cast<double>(vm.current_bytes) ||
       little_free);
  c.faulting = faulting_by_share || c.rereading_evicted;
  const double rising = std::max(0.0, c.in_use_rate);
  const double projected_in_use = static_cast<double>(c.in_use) + rising * host.pacing_tick_s();
  const bool short_now = c.usable < c.target_free;
  const bool falling_short =
      rising > 0 && static_cast<double>(vm.current_bytes) - projected_in_use <
                        g * static_cast<double>(vm.current_bytes);
  c.needs = c.guest_swapping || c.faulting || (!c.settling && (short_now || falling_short));
  c.distress = c.guest_swapping || (!c.settling && c.usable < c.target_free / 2);
  c.own_why = c.guest_swapping ? Candidate::OwnWhy::swapping
              : short_now      ? Candidate::OwnWhy::short_of_memory
              : falling_short  ? Candidate::OwnWhy::falling
              : c.faulting     ? Candidate::OwnWhy::faulting
                               : Candidate::OwnWhy::none;
  // A critical host funds no growth but for guests in distress: its memory is going to swap.
  if (c.needs && vm.current_bytes < settings.max_bytes &&
      (c.distress || host.level != HostLevel::critical)) {
    // Up to its comfort point at the in-use it will have by the next tick.
    const std::uint64_t grow_to = size_keeping(settings, projected_in_use, g_comfort);
    std::uint64_t want = above(grow_to, vm.current_bytes);
    if (c.distress) {
      want = std::max(want, settings.max_step_bytes);  // in distress: at least a full step
    }
    if (c.faulting) {
      std::uint64_t reread_want =
          static_cast<std::uint64_t>(rereads_per_s * kGuestPageBytes * kRereadFundingSeconds);
      // Re-reads that make it faulting only because they rose after a shrink (its share looks
      // roomy) ask back what the shrinks took, no more: growth past it is not what they evicted.
      if (!faulting_by_share && c.memory->size_before_shrink_bytes) {
        reread_want =
            std::min(reread_want, above(*c.memory->size_before_shrink_bytes, vm.current_bytes));
      }
      want = std::max(want, reread_want);
    }
    // A guest in need is never held back by the deadband.
    want = std::max(want, settings.deadband_bytes);
    c.want = step_limit(c, std::min(want, settings.max_bytes - vm.current_bytes));
  }
}

// Whether a page-in rate rose after the guest's last shrink, within its class's cache_protection,
// from `before` at the shrink (-1: none recorded) to `now` (both in pages/s): more than twice as
// high plus kCacheFaultRisePerSecond.
bool rose_after_shrink(const Candidate& c, const PolicyState::Vm& memory, std::int64_t now_ms,
                       double now, double before) {
  const auto protection = c.settings.cache_protection.count();
  return protection > 0 && memory.last_shrink_ms && now_ms - *memory.last_shrink_ms < protection &&
         before >= 0 && now > 2 * before + kCacheFaultRisePerSecond;
}

// Cache working-set protection: major faults that rise after a shrink mean the shrink evicted
// what the guest reads; it is not shrunk again for a while unless the host is critical. Disk
// reads that rise hold it so only at a re-read rate (rereading_evicted): they mix first reads
// in. Without the hold a guest grown back was shrunk into its hot set again as soon as its
// hysteresis ended, on real guests again and again.
void watch_cache(Candidate& c, PolicyState::Vm& memory, std::int64_t now_ms) {
  if (c.faults_rose || c.rereading_evicted) {
    memory.cache_protected_until_ms = now_ms + c.settings.cache_protection.count();
  }
  c.protected_cache = now_ms < memory.cache_protected_until_ms;
}

// How large the guest can make itself without memtide: any size with guest swap it has shown it
// uses; with autodeflate, whatever its balloon holds, which for a guest with virtio-mem ends at
// the balloon's ceiling (unplugged blocks come back only when memtide plugs them).
std::uint64_t rescues_itself_up_to(const VmSample& vm) {
  if (vm.guest.swap_out_bytes_total.value_or(0) > 0) {
    return UINT64_MAX;
  }
  if (!vm.balloon_autodeflate.value_or(false)) {
    return 0;
  }
  return vm.virtio_mem.empty() ? UINT64_MAX : balloon_ceiling(vm);
}

// What it can give, by how bad the host's pressure is. Every level keeps its floor and its burst
// headroom; outside critical it keeps its comfort band, at critical its free target. While the
// pressure is mild (below the reserve, but neither heading for swap nor critical) a guest that
// cannot rescue itself from a burst (its balloon does not deflate itself that far, it has no swap
// it has used) also keeps kSelfRescueHeadroomShare of its maximum.
void judge_spare(Candidate& c, const HostView& host) {
  const VmSample& vm = *c.vm;
  const EffectiveBalloon& settings = c.settings;
  const bool critical = host.level == HostLevel::critical;
  if (c.needs || c.settling || (c.protected_cache && !critical)) {
    return;
  }
  const std::uint64_t keep_burst = saturating_add(c.in_use, c.burst);
  const bool mild = !critical && !host.heading;
  const std::uint64_t burst_need = saturating_add(c.in_use, burst_room(c));
  const std::uint64_t keep_unrescued =
      burst_need <= rescues_itself_up_to(vm) || !mild ? 0 : burst_need;
  const std::uint64_t keep_comfort = std::max({settings.floor_bytes, c.comfort, keep_burst});
  const std::uint64_t keep_mild = std::max(keep_comfort, keep_unrescued);
  // Said in its explanation only when the host wants memory from it.
  c.keeps_burst_room = host.level != HostLevel::ok && keep_unrescued > keep_comfort &&
                       vm.current_bytes > keep_comfort;
  const std::uint64_t keep_critical = std::max({settings.floor_bytes, c.ideal, keep_burst});
  c.comfortable_spare = above(vm.current_bytes, keep_mild);
  c.reclaimable = c.comfortable_spare;
  c.spare = above(vm.current_bytes, critical ? keep_critical : keep_mild);
  c.rescue_room = above(vm.current_bytes, critical ? keep_critical : keep_comfort);
}

// A guest grown within its hysteresis cannot be shrunk now, and one whose balloon has not
// reached its last shrink target after kBalloonSettleMs cannot give what it was asked for (the
// guest could not free it; it is asked again after its hysteresis): counting either as a donor
// would fund growth elsewhere with memory that never comes back.
bool cannot_give_now(const Candidate& c, const PolicyState::Vm& memory, std::int64_t now_ms) {
  const std::uint64_t current = c.vm->current_bytes;
  const auto hysteresis = c.settings.hysteresis.count();
  const bool grown_recently =
      memory.last_direction > 0 && now_ms - memory.last_change_ms < hysteresis;
  const std::int64_t since_change = now_ms - memory.last_change_ms;
  const auto in_flight = in_flight_target(memory, current);
  const bool refusing = memory.last_direction < 0 && in_flight &&
                        current > *in_flight + c.settings.deadband_bytes &&
                        since_change >= kBalloonSettleMs &&
                        since_change < std::max<std::int64_t>(hysteresis, kBalloonSettleMs * 2);
  return grown_recently || refusing;
}

// A squeeze (critical, nothing spare left) takes what a guest uses, except from a guest in
// distress. A guest that has shown it can swap pages out by itself, which picks colder pages than
// the host would, may go to its floor; any other keeps what it uses plus its burst headroom until
// the host itself swaps or stalls.
// While the host itself swaps or stalls, any guest may go to its floor, even one short of memory,
// unless it is swapping already: a balloon only takes what the guest can free (it cannot make the
// guest kill a process), and a guest pages out its own cold memory better than the host, which
// pages out guest memory blind and makes every guest wait.
std::uint64_t squeeze_room(const Candidate& c, const HostView& host) {
  const VmSample& vm = *c.vm;
  const bool host_paging = host.swapping || host.psi_full_high;
  if (host.level != HostLevel::critical || c.settling || c.guest_swapping ||
      (c.distress && !host_paging)) {
    return 0;
  }
  // A virtio-mem unplug only moves pages, never to swap: what the guest uses above its balloon's
  // ceiling stays plugged whatever is asked, and an unplug the guest is still trying keeps its
  // driver from plugging memory when the guest then needs it (seen on real guests: a guest
  // squeezed so died of its next allocation). Such a guest keeps what it uses.
  const std::uint64_t keep_burst = saturating_add(c.in_use, c.burst);
  const bool unplug_only = !vm.virtio_mem.empty() && keep_burst > balloon_ceiling(vm);
  const bool can_swap =
      !unplug_only && (vm.guest.swap_out_bytes_total.value_or(0) > 0 || host_paging);
  return above(vm.current_bytes,
               can_swap ? c.settings.floor_bytes : std::max(c.settings.floor_bytes, keep_burst));
}

// What a guest paged in since its last report: whether it swapped in, and its major faults/s.
// Updates the counters kept in its memory.
struct PageIns {
  bool swapping = false;
  double major_faults_per_s = 0;
  double disk_reads_per_s = 0;  // bytes/s
};

// The disks' read rate between the last two times the collector asked (their figures stand in
// between, and so does the rate); none without figures, and 0 after a counter went back (a disk
// removed).
void count_disk_reads(const VmSample& vm, PolicyState::Vm& memory) {
  if (!vm.disk_read_bytes_total) {
    memory.disk_read_bytes_total.reset();
    memory.disk_reads_per_second = 0;
    return;
  }
  if (memory.disk_read_bytes_total && vm.disk_reads_at_ms == memory.disk_reads_at_ms) {
    return;  // not asked again since
  }
  memory.disk_reads_per_second =
      memory.disk_read_bytes_total && vm.disk_reads_at_ms > memory.disk_reads_at_ms &&
              *vm.disk_read_bytes_total >= *memory.disk_read_bytes_total
          ? static_cast<double>(*vm.disk_read_bytes_total - *memory.disk_read_bytes_total) /
                (static_cast<double>(vm.disk_reads_at_ms - memory.disk_reads_at_ms) / 1000.0)
          : 0;
  memory.disk_read_bytes_total = vm.disk_read_bytes_total;
  memory.disk_reads_at_ms = vm.disk_reads_at_ms;
}

PageIns count_page_ins(const VmSample& vm, PolicyState::Vm& memory, std::int64_t now_ms) {
  PageIns p;
  p.swapping = memory.swap_in_bytes_total && vm.guest.swap_in_bytes_total &&
               *vm.guest.swap_in_bytes_total > *memory.swap_in_bytes_total;
  if (memory.major_faults_total && vm.guest.major_faults_total &&
      *vm.guest.major_faults_total > *memory.major_faults_total && now_ms > memory.sampled_ms) {
    p.major_faults_per_s =
        static_cast<double>(*vm.guest.major_faults_total - *memory.major_faults_total) /
        change_interval_s(memory.faults_report_unix_s, vm.guest.last_update_unix_s,
                          memory.sampled_ms, now_ms);
  }
  memory.swap_in_bytes_total = vm.guest.swap_in_bytes_total;
  memory.major_faults_total = vm.guest.major_faults_total;
  memory.faults_report_unix_s = vm.guest.last_update_unix_s;
  memory.major_faults_per_second = p.major_faults_per_s;
  count_disk_reads(vm, memory);
  p.disk_reads_per_s = memory.disk_reads_per_second;
  return p;
}

// A guest whose statistics went stale, judged blind: it may only grow, one step toward its
// maximum (the one change that cannot hurt it).
Candidate blind_candidate(const VmSample& vm, EffectiveBalloon settings, PolicyState::Vm& memory) {
  Candidate c;
  c.vm = &vm;
  c.memory = &memory;
  c.settings = std::move(settings);
  c.blind = true;
  c.needs = true;
  c.want = step_limit(c, c.settings.max_bytes - vm.current_bytes);
  c.own_why = Candidate::OwnWhy::stale;
  c.cause = Cause::stale;
  return c;
}

// Judges one running, managed guest with fresh statistics: its need, its spare at each level of
// host pressure, its trend, and what it showed before. Updates its memory in the next state.
Candidate judge_guest(const VmSample& vm, EffectiveBalloon given, std::uint64_t usable,
                      PolicyState::Vm& memory, const HostView& host, std::int64_t now_ms,
                      std::int64_t collected_unix_ms, PageIns page_ins) {
  Candidate c;
  c.vm = &vm;
  c.settings = std::move(given);
  c.memory = &memory;
  c.usable = std::min(usable, vm.current_bytes);
  c.in_use = vm.current_bytes - c.usable;
  c.guest_swapping = page_ins.swapping;
  c.major_faults_per_s = page_ins.major_faults_per_s;
  c.disk_reads_per_s = page_ins.disk_reads_per_s;
  const auto page = static_cast<double>(kGuestPageBytes);
  c.faults_rose = rose_after_shrink(c, memory, now_ms, c.major_faults_per_s,
                                    memory.faults_before_shrink_per_second);
  c.reads_rose = rose_after_shrink(c, memory, now_ms, c.disk_reads_per_s / page,
                                   memory.reads_before_shrink_per_second / page);
  const auto in_use = static_cast<double>(c.in_use);
  c.target_free = static_cast<std::uint64_t>(c.settings.guest_free_ratio *
                                             static_cast<double>(vm.current_bytes));
  c.ideal = size_keeping(c.settings, in_use, c.settings.guest_free_ratio);
  c.comfort = size_keeping(c.settings, in_use, comfort_ratio(c.settings));
  c.settling = settling(vm, memory, collected_unix_ms);
  follow_in_use(c, memory, now_ms);
  judge_need(c, host);
  watch_cache(c, memory, now_ms);
  judge_spare(c, host);
  if (cannot_give_now(c, memory, now_ms)) {
    c.held_by_hysteresis = c.spare > 0;
    c.spare = c.comfortable_spare = c.rescue_room = 0;
    return c;
  }
  c.squeeze_room = squeeze_room(c, host);
  discount_unresident(vm, c);
  return c;
}

// Rule 2: every VM gets an Outcome; managed, running guests with figures become Candidates.
std::vector<Candidate> consider_guests(const Snapshot& snapshot, const HostView& host,
                                       const config::Config& config, PolicyState& next,
                                       std::int64_t now_ms, Plan& plan) {
  const std::string balloons_owned_by =
      yielding_to(snapshot.other_managers, Controls::balloons, config);
  std::vector<Candidate> candidates;
  candidates.reserve(snapshot.vms.size());
  plan.outcomes.reserve(snapshot.vms.size());
  std::size_t touched = 0;  // entries of next.vms sampled by this tick
  const auto& last_order = next.vm_order.entries;
  decltype(next.vm_order.entries) order;
  order.reserve(snapshot.vms.size());
  for (const auto& vm : snapshot.vms) {
    // Each VM's memory is updated in place; entries not touched this tick are swept below.
    const std::size_t i = order.size();
    order.push_back(i < last_order.size() && vm.has_key(last_order[i]->first)
                        ? last_order[i]
                        : &*next.vms.try_emplace(vm.key()).first);
    PolicyState::Vm& memory = order.back()->second;
    const PageIns page_ins = count_page_ins(vm, memory, now_ms);

    Outcome& outcome = plan.outcomes.emplace_back();
    outcome.vm = vm.name;
    outcome.state = vm.state;
    outcome.stats_status = vm.stats_status;
    outcome.current_bytes = vm.current_bytes;
    auto settings = effective_balloon(vm, config, balloons_owned_by);
    outcome.pinned_by = settings.pinned_by;
    outcome.floor_bytes = settings.floor_bytes;
    std::optional<std::uint64_t> usable;
    if (!settings.managed) {
      outcome.kind = Outcome::Kind::unmanaged;
      outcome.unmanaged_reason = settings.unmanaged_reason;
    } else if (vm.state != VmState::running) {
      outcome.kind = Outcome::Kind::not_running;
    } else if (vm.stats_status == GuestStatsStatus::stale) {
      // A guest starving for memory may stop reporting (its balloon driver cannot run). Giving
      // memory back is the one change that cannot hurt a guest, so while the host is not
      // pressed a stale guest gets one step back toward its maximum per tick; it is never
      // shrunk blind.
      outcome.kind = Outcome::Kind::no_statistics;
      if (vm.current_bytes < settings.max_bytes && host.level == HostLevel::ok) {
        candidates.push_back(blind_candidate(vm, std::move(settings), memory));
        candidates.back().outcome = plan.outcomes.size() - 1;
      }
    } else if (vm.stats_status != GuestStatsStatus::ok) {
      outcome.kind = Outcome::Kind::no_statistics;
    } else if (usable = usable_memory(vm); !usable || vm.current_bytes == 0) {
      outcome.kind = Outcome::Kind::no_usable_figure;
    } else {
      candidates.push_back(judge_guest(vm, std::move(settings), *usable, memory, host, now_ms,
                                       snapshot.collected_at_unix_ms, page_ins));
      candidates.back().outcome = plan.outcomes.size() - 1;
    }
    touched += memory.sampled_ms != now_ms ? 1 : 0;
    memory.sampled_ms = now_ms;
  }
  // VMs gone since the last tick are forgotten; when every entry was touched (the usual tick)
  // there is none, and the walk over the whole map is saved.
  if (touched != next.vms.size()) {
    std::erase_if(next.vms,
                  [now_ms](const auto& entry) { return entry.second.sampled_ms != now_ms; });
  }
  next.vm_order.entries = std::move(order);  // touched entries only: none was erased
  return candidates;
}

// Takes up to `amount` bytes from `pool` (candidates with something to give, per `room`),
// greedily from the one with the most room per share: a VM with twice the shares keeps its
// memory longer. Returns what was taken; records each take, with its cause and reason.
std::uint64_t reclaim(std::vector<Candidate*>& pool, std::uint64_t amount,
                      std::uint64_t (*room)(const Candidate&), Cause cause,
                      const std::string& why) {
  if (amount == 0 || pool.empty()) {
    return 0;
  }
  // Sort once on precomputed keys; ties keep the pool's order (the snapshot's, by name).
  std::vector<std::pair<double, std::size_t>> order;
  order.reserve(pool.size());
  for (std::size_t i = 0; i < pool.size(); ++i) {
    order.emplace_back(-static_cast<double>(above(room(*pool[i]), pool[i]->unresident)) /
                           std::max(1u, pool[i]->settings.shares),
                       i);
  }
  // A heap, not a sort: the greedy loop usually stops after a few candidates, so this is O(N)
  // plus O(log N) per candidate taken from, in the same order a full sort gives.
  const auto first_out = std::greater<>();
  std::make_heap(order.begin(), order.end(), first_out);
  std::uint64_t taken = 0;
  while (!order.empty() && taken < amount) {
    std::pop_heap(order.begin(), order.end(), first_out);
    const std::size_t index = order.back().second;
    order.pop_back();
    Candidate* c = pool[index];
    const std::uint64_t already = c->delta < 0 ? static_cast<std::uint64_t>(-c->delta) : 0;
    const std::uint64_t limit = step_limit(*c, room(*c));
    if (limit <= already) {
      continue;
    }
    // A shrink frees host memory only beyond the part of the guest not resident (unresident):
    // it counts for `amount` by what it frees, and may go that much further to free it.
    const std::uint64_t not_freeing = above(c->unresident, already);
    const std::uint64_t take =
        std::min(limit - already, saturating_add(amount - taken, not_freeing));
    if (already + take < c->settings.deadband_bytes) {
      c->below_deadband = already + take;  // a change that would not be made funds nothing
      continue;
    }
    c->delta -= static_cast<std::int64_t>(take);
    c->cause = cause;
    c->why = &why;
    taken += above(take, not_freeing);
  }
  return taken;
}

std::uint64_t room_spare(const Candidate& c) {
  return c.spare;
}
std::uint64_t room_comfortable_spare(const Candidate& c) {
  return c.comfortable_spare;
}
std::uint64_t room_squeeze(const Candidate& c) {
  return c.squeeze_room;
}
std::uint64_t room_rescue(const Candidate& c) {
  return c.rescue_room;
}

// Reasons shared by many VMs; they outlive every Candidate that points at them.
struct SharedReasons {
  std::string feed;     // a donor gives to guests in need
  std::string relieve;  // the host's reason
  std::string squeeze;
};

// Rule 3: guests in need grow first, most urgent first (in distress, then least usable per
// share). The host funds them from its room above the reserve while it is not pressed and not
// paying back swap; while the host is neither critical nor heading for swap, a guest in distress
// may also take from the upper half of the reserve, and one re-reading what a shrink evicted
// from its upper quarter (kRereadReserveShare): a guest's life, and the work it loses, come
// before the host's comfort.
// The rest comes from guests with spare.
void fund_guests_in_need(std::vector<Candidate>& candidates, const HostView& host,
                         const SharedReasons& reasons) {
  std::vector<Candidate*> needy;
  std::vector<Candidate*> donors;
  std::vector<Candidate*> rescuers;  // donors to guests in distress
  for (auto& c : candidates) {
    if (c.want > 0 && !(c.blind && host.level != HostLevel::ok)) {
      needy.push_back(&c);
    }
    if ((host.pressed() ? c.spare : c.comfortable_spare) > 0) {
      donors.push_back(&c);
    }
    if (c.rescue_room > 0 && c.want == 0) {
      rescuers.push_back(&c);
    }
  }
  if (needy.empty()) {
    return;
  }
  std::sort(needy.begin(), needy.end(), [](const Candidate* a, const Candidate* b) {
    if (a->distress != b->distress) {
      return a->distress;
    }
    const double ua = static_cast<double>(a->usable) / std::max(1u, a->settings.shares);
    const double ub = static_cast<double>(b->usable) / std::max(1u, b->settings.shares);
    return ua != ub ? ua < ub : a->vm->name < b->vm->name;
  });
  const bool host_funds = host.level <= HostLevel::heading && !host.paying_back;
  std::uint64_t host_room = host_funds ? above(host.available, host.reserve) : 0;
  // The reserve is open to guests in distress (its upper half) and to guests re-reading what a
  // shrink evicted (its upper quarter) while the host holds steady: not when it is critical, and
  // not while its MemAvailable is falling toward swap.
  const bool reserve_open = host.level != HostLevel::critical && !host.heading;
  const auto reserve_room_down_to = [&](double share) -> std::uint64_t {
    const auto floor = static_cast<std::uint64_t>(share * static_cast<double>(host.reserve));
    return reserve_open ? above(above(host.available, floor), host_room) : 0;
  };
  std::uint64_t distress_room = reserve_room_down_to(0.5);
  std::uint64_t reread_room = reserve_room_down_to(kRereadReserveShare);
  std::uint64_t short_distress = 0;
  std::uint64_t short_other = 0;
  for (Candidate* c : needy) {
    std::uint64_t grant = std::min(c->want, host_room);
    host_room -= grant;
    if ((c->distress || c->rereading_evicted) && !c->blind) {
      const std::uint64_t room = c->distress ? distress_room : std::min(distress_room, reread_room);
      const std::uint64_t extra = std::min(c->want - grant, room);
      distress_room -= extra;
      reread_room -= std::min(reread_room, extra);
      grant += extra;
    }
    c->granted = grant;
    (c->distress ? short_distress : short_other) += c->want - grant;
  }
  // Guests in distress come first (the list is sorted so) and may take the burst room of guests
  // that cannot rescue themselves; the others only what donors have spare.
  std::uint64_t funds =
      reclaim(rescuers, short_distress, room_rescue, Cause::funding, reasons.feed);
  funds += reclaim(donors, short_other, host.pressed() ? room_spare : room_comfortable_spare,
                   Cause::funding, reasons.feed);
  for (Candidate* c : needy) {
    const std::uint64_t more = std::min(c->want - c->granted, funds);
    funds -= more;
    c->granted += more;
    c->delta += static_cast<std::int64_t>(c->granted);
    // Its own cause and reason (set when it was judged) stand.
  }
}

// Rule 4: relieve the host. The amount is the largest of the reserve deficit, the forecast
// shortfall (reserve - MemAvailable projected to the horizon, paced over the time left) and,
// while swapping or stalled, everything spare: never gentler below the reserve than above it.
// Only a critical host squeezes guests beyond their spare, down to what they use plus their
// burst headroom and never below their floors.
void relieve_host(std::vector<Candidate>& candidates, const HostView& host, const Plan& plan,
                  const SharedReasons& reasons) {
  if (host.level == HostLevel::ok) {
    return;
  }
  std::vector<Candidate*> spare_pool;
  std::uint64_t spare_total = 0;
  for (auto& c : candidates) {
    if (c.spare > 0) {
      spare_pool.push_back(&c);
      spare_total = saturating_add(spare_total, c.spare);
    }
  }
  std::uint64_t amount = host.deficit;
  if (plan.forecast.seconds_to_swap) {
    const double projected = static_cast<double>(host.available) +
                             plan.forecast.available_slope_bytes_per_second * host.horizon_s;
    const double shortfall = static_cast<double>(host.reserve) - projected;
    const double share =
        std::min(1.0, host.pacing_tick_s() / std::max(1.0, *plan.forecast.seconds_to_swap));
    if (shortfall > 0) {
      amount = std::max(amount, static_cast<std::uint64_t>(shortfall * share));
    }
  }
  if (host.swapping || host.psi_some_high || host.psi_full_high) {
    amount = std::max(amount, spare_total);  // a step from everything spare
  }
  const Cause cause = host.pressed() ? Cause::host_pressure : Cause::swap_forecast;
  const std::uint64_t got = reclaim(spare_pool, amount, room_spare, cause, reasons.relieve);
  if (got < amount && host.level == HostLevel::critical) {
    std::vector<Candidate*> all;
    for (auto& c : candidates) {
      if (c.delta <= 0 && c.squeeze_room > 0) {
        all.push_back(&c);
      }
    }
    reclaim(all, amount - got, room_squeeze, Cause::squeeze, reasons.squeeze);
  }
}

// Rule 5: an idle host (nothing forecast now; no real pressure and no swap being paid back for
// kGiveBackQuietMs) gives memory back toward the maximum, keeping kGiveBackReserveFactor x its
// reserve: one step per guest per tick, at most half the room per tick, most shares first (then
// the most ballooned). A guest whose last change was a shrink waits out its hysteresis. Pressure
// ticks (the PSI trigger) come fast, but a host under pressure gives nothing back, so the tick
// interval paces this.
void give_back_when_idle(std::vector<Candidate>& candidates, const HostView& host,
                         PolicyState& next, std::int64_t now_ms) {
  if (host.pressed() || host.paying_back) {
    next.last_not_ok_ms = now_ms;
    return;
  }
  if (host.level != HostLevel::ok) {
    return;  // a forecast near the swap point: nothing back while it lasts, no quiet period after
  }
  if (next.last_not_ok_ms && now_ms - *next.last_not_ok_ms < kGiveBackQuietMs) {
    return;
  }
  const auto keep =
      static_cast<std::uint64_t>(kGiveBackReserveFactor * static_cast<double>(host.reserve));
  std::uint64_t room = above(host.available, keep) / 2;
  if (room == 0) {
    return;
  }
  std::vector<Candidate*> order;
  for (auto& c : candidates) {
    const auto& m = *c.memory;
    const bool waiting_out_shrink =
        m.last_direction < 0 && now_ms - m.last_change_ms < c.settings.hysteresis.count();
    // A guest whose statistics predate its last change waits for fresh ones: it may have been
    // grown for need a moment ago.
    // A guest granted growth for its need this tick stays eligible: the idle host may give it
    // the rest of its step.
    if (c.settings.grow_when_host_idle && c.delta >= 0 && !c.blind && !c.settling &&
        !waiting_out_shrink &&
        c.vm->current_bytes + c.settings.deadband_bytes < c.settings.max_bytes) {
      order.push_back(&c);
    }
  }
  std::sort(order.begin(), order.end(), [](const Candidate* a, const Candidate* b) {
    if (a->settings.shares != b->settings.shares) {
      return a->settings.shares > b->settings.shares;
    }
    const auto ballooned = [](const Candidate* c) {
      return 1.0 -
             static_cast<double>(c->vm->current_bytes) / static_cast<double>(c->settings.max_bytes);
    };
    return ballooned(a) != ballooned(b) ? ballooned(a) > ballooned(b) : a->vm->name < b->vm->name;
  });
  for (Candidate* c : order) {
    const auto granted = static_cast<std::uint64_t>(c->delta);
    const std::uint64_t grow = std::min(
        above(step_limit(*c, c->settings.max_bytes - c->vm->current_bytes), granted), room);
    if (grow < c->settings.deadband_bytes) {
      continue;
    }
    room -= grow;
    c->delta += static_cast<std::int64_t>(grow);
    if (granted == 0) {
      c->cause = Cause::host_idle;
      c->own_why = Candidate::OwnWhy::host_idle;
    }
  }
}

// A balloon still on its way to the last target (libvirt reports its size with a lag) is not sent
// a target short of that one in the same direction: that would undo part of the last command.
// The new target is at least as far as the one in flight, but never more than a step from the
// balloon's size nor outside [floor, maximum] (either may have changed by a reload since). A
// command no longer in flight is forgotten.
std::int64_t continue_in_flight(const Candidate& c, std::int64_t target) {
  auto& memory = *c.memory;
  const auto current = static_cast<std::int64_t>(c.vm->current_bytes);
  const auto flight = in_flight_target(memory, c.vm->current_bytes);
  if (!flight) {
    memory.last_target_bytes.reset();
    memory.last_from_bytes.reset();
    return target;
  }
  const auto step = static_cast<std::int64_t>(c.settings.max_step_bytes);
  auto in_flight = static_cast<std::int64_t>(*flight);
  if (step > 0) {
    in_flight = std::clamp(in_flight, current - step, current + step);
  }
  in_flight = std::clamp(in_flight, static_cast<std::int64_t>(c.settings.floor_bytes),
                         static_cast<std::int64_t>(c.settings.max_bytes));
  if (memory.last_direction > 0 && target > current && in_flight > current) {
    return std::max(target, in_flight);
  }
  if (memory.last_direction < 0 && target < current && in_flight < current) {
    return std::min(target, in_flight);
  }
  return target;
}

// Why a change of `change` bytes toward `target` sends no command: too small, the same command
// waiting on the balloon, or a reversal within the hysteresis. Fills in the outcome and returns
// true; false when the command goes out.
bool hold_change(const Candidate& c, std::int64_t change, std::int64_t target, std::int64_t now_ms,
                 Outcome& outcome) {
  const auto& memory = *c.memory;
  const auto& settings = c.settings;
  if (change == 0) {
    outcome.kind = c.blind                ? Outcome::Kind::no_statistics
                   : c.settling           ? Outcome::Kind::settling
                   : c.held_by_hysteresis ? Outcome::Kind::hysteresis
                   : c.below_deadband > 0 ? Outcome::Kind::deadband
                                          : Outcome::Kind::unchanged;
    if (outcome.kind == Outcome::Kind::hysteresis) {
      outcome.hysteresis = settings.hysteresis;
    } else if (outcome.kind == Outcome::Kind::deadband) {
      outcome.change_bytes = c.below_deadband;
      outcome.deadband_bytes = settings.deadband_bytes;
    }
    outcome.short_at_maximum = c.needs && c.vm->current_bytes >= settings.max_bytes;
    return true;
  }
  // A guest in need (short, falling short, faulting, swapping) may always grow.
  const bool growing_in_need = change > 0 && c.needs;
  const auto magnitude = static_cast<std::uint64_t>(change > 0 ? change : -change);
  if (magnitude < settings.deadband_bytes && !growing_in_need) {
    outcome.kind = Outcome::Kind::deadband;
    outcome.change_bytes = magnitude;
    outcome.deadband_bytes = settings.deadband_bytes;
    return true;
  }
  // A balloon that has not reached the last target (a guest that cannot give more, or is still
  // working on it) is not sent the same command every tick; it is retried after the class's
  // hysteresis.
  if (memory.last_target_bytes == static_cast<std::uint64_t>(target) &&
      now_ms - memory.last_change_ms <
          std::max<std::int64_t>(settings.hysteresis.count(), 10'000)) {
    outcome.kind = Outcome::Kind::waiting;
    outcome.target_bytes = static_cast<std::uint64_t>(target);
    return true;
  }
  const int direction = change > 0 ? 1 : -1;
  const bool reversing = memory.last_direction != 0 && memory.last_direction != direction;
  if (reversing && now_ms - memory.last_change_ms < settings.hysteresis.count() &&
      !growing_in_need) {
    outcome.kind = Outcome::Kind::hysteresis;
    outcome.hysteresis = settings.hysteresis;
    return true;
  }
  return false;
}

// Why the command goes out: the rule's reason, or the limits that alone moved it, or the change
// in flight it continues.
std::string command_reason(const Candidate& c, std::int64_t target, std::int64_t wanted,
                           const HostView& host, Cause& cause) {
  const auto& settings = c.settings;
  std::string why = c.why != nullptr ? *c.why : own_reason(c, host.available);
  // A balloon outside its limits (a floor raised by a reload or new metadata, a size set by
  // hand) is moved inside them even when nothing else would change it; the command says so.
  const bool clamped_only = c.delta == 0 && target != wanted;
  if (target != wanted && (clamped_only || why.empty())) {
    cause = Cause::limits;
    if (target < static_cast<std::int64_t>(c.vm->current_bytes)) {
      return "above its maximum " + format_size(settings.max_bytes) + ": lowered to the maximum";
    }
    return settings.pinned_by.empty()
               ? "below its floor " + format_size(settings.floor_bytes) + ": raised to the floor"
               : "the host holds all of its memory whatever its balloon (" + settings.pinned_by +
                     "): let out to its maximum";
  }
  if (why.empty()) {
    why = "continues the change in flight to " +
          format_size(*c.memory->last_target_bytes);  // only the in-flight rule moved it
  }
  return why;
}

// The page-in rates a rise after a shrink is measured against (rose_after_shrink): those at the
// first shrink of a run. A guest shrunk again within cache_protection of its last shrink keeps
// the lowest rate of the run, so re-reads the earlier shrinks caused do not become the measure.
// Records the shrink's time: growth given back since does not end the run.
void remember_page_ins_before_shrink(const Candidate& c, PolicyState::Vm& memory,
                                     std::int64_t now_ms) {
  const bool in_run = memory.last_shrink_ms &&
                      now_ms - *memory.last_shrink_ms < c.settings.cache_protection.count();
  memory.last_shrink_ms = now_ms;
  const auto lowest = [in_run](double before, double now) {
    return in_run && before >= 0 && now >= 0 ? std::min(before, now) : now;
  };
  memory.faults_before_shrink_per_second =
      lowest(memory.faults_before_shrink_per_second, c.major_faults_per_s);
  memory.reads_before_shrink_per_second = lowest(
      memory.reads_before_shrink_per_second, c.vm->disk_read_bytes_total ? c.disk_reads_per_s : -1);
  memory.size_before_shrink_bytes =
      in_run && memory.size_before_shrink_bytes
          ? std::max(*memory.size_before_shrink_bytes, c.vm->current_bytes)
          : c.vm->current_bytes;
}

// Rule 6: deltas become commands within [floor, maximum], deadband and hysteresis.
void make_commands(std::vector<Candidate>& candidates, const HostView& host,
                   const Snapshot& snapshot, std::int64_t now_ms, Plan& plan) {
  for (auto& c : candidates) {
    const VmSample& vm = *c.vm;
    auto& memory = *c.memory;
    const auto current = static_cast<std::int64_t>(vm.current_bytes);
    const std::int64_t wanted = current + c.delta;
    const std::int64_t target = continue_in_flight(
        c, std::clamp<std::int64_t>(wanted, static_cast<std::int64_t>(c.settings.floor_bytes),
                                    static_cast<std::int64_t>(c.settings.max_bytes)));
    const std::int64_t change = target - current;
    Outcome& outcome = plan.outcomes[c.outcome];
    outcome.blind = c.blind;
    outcome.usable_bytes = c.usable;
    outcome.guest_free_ratio = c.settings.guest_free_ratio;
    outcome.keeps_burst_room = c.keeps_burst_room && change >= 0;
    outcome.unresident_bytes = c.unresident;
    if (hold_change(c, change, target, now_ms, outcome)) {
      continue;
    }
    const int direction = change > 0 ? 1 : -1;
    const auto magnitude = static_cast<std::uint64_t>(change > 0 ? change : -change);
    outcome.kind = Outcome::Kind::changed;
    outcome.change_index = plan.balloons.size();
    BalloonChange bc;
    bc.vm = vm.name;
    bc.uuid = vm.uuid;
    bc.connection = vm.connection;
    bc.from_bytes = vm.current_bytes;
    bc.to_bytes = static_cast<std::uint64_t>(target);
    bc.floor_bytes = c.settings.floor_bytes;
    bc.cause = c.cause;
    const std::string why = command_reason(c, target, wanted, host, bc.cause);
    // The guest's own reasons state its usable share already; a shared one (the host's) and a
    // limit do not, so the command adds it.
    const bool own_states_share =
        c.why == nullptr && bc.cause != Cause::limits &&
        (c.own_why == Candidate::OwnWhy::swapping ||
         c.own_why == Candidate::OwnWhy::short_of_memory ||
         c.own_why == Candidate::OwnWhy::falling || c.own_why == Candidate::OwnWhy::faulting);
    bc.reason = why + (own_states_share ? "" : "; " + vm.name + " has " + guest_status(outcome)) +
                ": " + (direction > 0 ? "grow " : "shrink ") + format_size(magnitude);
    bc.previous = {memory.last_change_ms,
                   memory.last_change_unix_ms,
                   memory.last_direction,
                   memory.last_target_bytes,
                   memory.last_from_bytes,
                   memory.last_shrink_ms,
                   memory.faults_before_shrink_per_second,
                   memory.reads_before_shrink_per_second,
                   memory.size_before_shrink_bytes};
    plan.balloons.push_back(std::move(bc));
    if (direction < 0) {
      remember_page_ins_before_shrink(c, memory, now_ms);
    }
    memory.last_change_ms = now_ms;
    memory.last_change_unix_ms = snapshot.collected_at_unix_ms;
    memory.last_direction = direction;
    memory.last_target_bytes = static_cast<std::uint64_t>(target);
    memory.last_from_bytes = vm.current_bytes;
  }
}

// Rule 7: alerts, with resolution hysteresis.
void raise_alerts(const std::vector<Candidate>& candidates, const HostView& host,
                  const Snapshot& snapshot, const config::Config& config, std::int64_t now_ms,
                  Plan& plan, PolicyState& next) {
  const PolicyState& state = next;  // its alerts are read before they are replaced
  std::vector<Alert> raised;
  if (host.swapping || (host.psi_full_high && host.below_reserve())) {
    raised.push_back({"host-swapping", "", Severity::critical,
                      host.swapping ? "host is swapping out " + rate_text(host.swap_out_rate)
                                    : "host memory fully stalled below its reserve",
                      now_ms});
  }
  if (host.forecast) {
    raised.push_back({"host-swap-forecast", "", Severity::warning,
                      "host predicted to swap in " + seconds_text(*plan.forecast.seconds_to_swap) +
                          " (MemAvailable " + format_size(host.available) + ", falling " +
                          rate_text(-plan.forecast.available_slope_bytes_per_second) + ")",
                      now_ms});
  }
  if (host.psi_full_high || host.psi_some_high) {
    raised.push_back(
        {"host-memory-pressure", "", host.psi_full_high ? Severity::critical : Severity::warning,
         "memory PSI some " + percent(host.psi_some) + ", full " + percent(host.psi_full), now_ms});
  }
  for (const auto& c : candidates) {
    if (c.blind || !c.needs) {
      continue;
    }
    const VmSample& vm = *c.vm;
    const std::string usable = format_size(c.usable) + " usable (target " +
                               format_size(c.target_free) + ")" +
                               (c.guest_swapping ? ", swapping" : "");
    if (vm.current_bytes <= c.settings.floor_bytes + c.settings.deadband_bytes) {
      raised.push_back(
          {"guest-distress", vm.name, Severity::warning,
           vm.name + " at its floor " + format_size(c.settings.floor_bytes) + " with " + usable,
           now_ms});
    } else if (c.distress && c.granted < c.want) {
      raised.push_back({"guest-starving", vm.name, Severity::warning,
                        vm.name + " short of memory above its floor: " + usable + ", granted " +
                            format_size(c.granted) + " of " + format_size(c.want) + " (" +
                            plan.host_summary + ")",
                        now_ms});
    }
  }
  const std::string balloons_owned_by =
      yielding_to(snapshot.other_managers, Controls::balloons, config);
  const std::string ksm_owned_by = yielding_to(snapshot.other_managers, Controls::ksm, config);
  if (auto summary = yield_summary(balloons_owned_by, ksm_owned_by); !summary.empty()) {
    raised.push_back({"other-memory-manager", "", Severity::warning, std::move(summary), now_ms});
  }
  if (host.pressed()) {
    for (const auto& vm : snapshot.vms) {
      if (vm.stats_status == GuestStatsStatus::stale && vm.state == VmState::running &&
          effective_balloon(vm, config, balloons_owned_by).managed) {
        raised.push_back({"guest-stale", vm.name, Severity::warning,
                          vm.name + " stopped reporting memory statistics while the host is " +
                              to_string(host.level) + ": it cannot be judged or shrunk",
                          now_ms});
      }
    }
  }
  std::map<std::pair<std::string, std::string>, PolicyState::AlertMemory> alerts;
  for (auto& a : raised) {
    const auto key = std::make_pair(a.name, a.subject);
    if (auto it = state.alerts.find(key); it != state.alerts.end()) {
      a.since_ms = it->second.alert.since_ms;
    }
    alerts[key] = {a, 0};
  }
  for (const auto& [key, memory] : state.alerts) {
    if (alerts.count(key) == 0 && memory.clear_ticks + 1 < kAlertClearTicks) {
      alerts[key] = {memory.alert, memory.clear_ticks + 1};  // still firing while it settles
    }
  }
  for (const auto& [key, memory] : alerts) {
    plan.alerts.push_back(memory.alert);
  }
  next.alerts = std::move(alerts);
}

}  // namespace

std::string Plan::explanation(const std::string& vm) const {
  const auto it = std::find_if(outcomes.begin(), outcomes.end(),
                               [&vm](const Outcome& o) { return o.vm == vm; });
  return it == outcomes.end() ? std::string() : explain(*it);
}

std::string Plan::explain(const Outcome& o) const {
  std::string text = explain_kind(o);
  if (!o.pinned_by.empty() && o.kind != Outcome::Kind::changed) {
    text += "; never shrunk: the host holds all of its memory whatever its balloon (" +
            o.pinned_by + ")";
  }
  // Below a MiB it is rounding, not worth a sentence.
  if (o.unresident_bytes >= (1U << 20)) {
    text += "; free page reporting: " + format_size(o.unresident_bytes) +
            " of its memory is free pages the host has back already (not resident), so only a "
            "shrink beyond that frees host memory";
  }
  return text;
}

std::string Plan::explain_kind(const Outcome& o) const {
  switch (o.kind) {
    case Outcome::Kind::unmanaged:
      return "not managed: " + o.unmanaged_reason;
    case Outcome::Kind::not_running:
      return std::string("not changed: the VM is ") + to_string(o.state);
    case Outcome::Kind::no_statistics:
      return std::string("not changed: guest statistics are ") + to_string(o.stats_status) +
             "; memtide does not shrink a guest blind";
    case Outcome::Kind::no_usable_figure:
      return "not changed: the guest reports no usable memory figure";
    case Outcome::Kind::unchanged:
      return "unchanged at " + format_size(o.current_bytes) + ": " + guest_status(o) +
             (o.short_at_maximum ? " (already at its maximum)" : "") +
             (o.keeps_burst_room ? "; keeps room for a burst until the host is critical: its "
                                   "balloon cannot deflate itself that far (no autodeflate, or "
                                   "memory in virtio-mem blocks) and it has no swap to rescue "
                                   "itself"
                                 : "");
    case Outcome::Kind::deadband:
      return "unchanged: " + format_size(o.change_bytes) + " is within the deadband of " +
             format_size(o.deadband_bytes) + "; " + guest_status(o);
    case Outcome::Kind::waiting:
      return "waiting: asked for " + format_size(o.target_bytes) + ", the balloon is at " +
             format_size(o.current_bytes) + "; " + guest_status(o);
    case Outcome::Kind::hysteresis:
      return "unchanged: would reverse its last change within the " +
             config::format_duration(o.hysteresis) + " hysteresis; " + guest_status(o);
    case Outcome::Kind::settling:
      return "unchanged: its statistics predate its last balloon change, so its spare memory is "
             "not judged until they are updated; " +
             guest_status(o);
    case Outcome::Kind::changed:
      return o.change_index < balloons.size() ? balloons[o.change_index].reason : "";
  }
  return "";
}

void unsend(PolicyState& state, const BalloonChange& change) {
  const auto it = state.vms.find(change.key());
  if (it == state.vms.end()) {
    return;
  }
  it->second.last_change_ms = change.previous.last_change_ms;
  it->second.last_change_unix_ms = change.previous.last_change_unix_ms;
  it->second.last_direction = change.previous.last_direction;
  it->second.last_target_bytes = change.previous.last_target_bytes;
  it->second.last_from_bytes = change.previous.last_from_bytes;
  it->second.last_shrink_ms = change.previous.last_shrink_ms;
  it->second.faults_before_shrink_per_second = change.previous.faults_before_shrink_per_second;
  it->second.reads_before_shrink_per_second = change.previous.reads_before_shrink_per_second;
  it->second.size_before_shrink_bytes = change.previous.size_before_shrink_bytes;
}

SwapForecast forecast_swap(const std::deque<std::pair<std::int64_t, std::uint64_t>>& history,
                           std::uint64_t total_bytes) {
  SwapForecast f;
  f.points = history.size();
  if (history.size() < 2) {
    return f;
  }
  std::optional<double> slope;
  if (history.size() >= kForecastMinPoints) {
    std::vector<double> slopes;
    slopes.reserve(history.size() * (history.size() - 1) / 2);
    for (std::size_t i = 0; i < history.size(); ++i) {
      for (std::size_t j = i + 1; j < history.size(); ++j) {
        const double dt = static_cast<double>(history[j].first - history[i].first) / 1000.0;
        if (dt > 0) {
          slopes.push_back(
              (static_cast<double>(history[j].second) - static_cast<double>(history[i].second)) /
              dt);
        }
      }
    }
    if (!slopes.empty()) {
      const auto mid = slopes.begin() + static_cast<std::ptrdiff_t>(slopes.size() / 2);
      std::nth_element(slopes.begin(), mid, slopes.end());
      double median = *mid;
      if (slopes.size() % 2 == 0) {
        median = (median + *std::max_element(slopes.begin(), mid)) / 2;
      }
      slope = median;
    }
  }
  // A cliff: the last step alone fell by a material share of memory. The median of pairwise
  // slopes would need most of the window to fall before it saw it.
  const auto& [t0, v0] = history[history.size() - 2];
  const auto& [t1, v1] = history.back();
  const double step_s = static_cast<double>(t1 - t0) / 1000.0;
  if (step_s > 0 && v0 > v1 &&
      static_cast<double>(v0 - v1) >= kCliffShareOfTotal * static_cast<double>(total_bytes)) {
    const double step_slope = -static_cast<double>(v0 - v1) / step_s;
    if (!slope || step_slope < *slope) {
      slope = step_slope;
      f.cliff = true;
    }
  }
  if (!slope) {
    return f;
  }
  f.available_slope_bytes_per_second = *slope;
  if (*slope < 0) {
    const double swap_point = kSwapPointRatio * static_cast<double>(total_bytes);
    const double now_available = static_cast<double>(history.back().second);
    f.seconds_to_swap = std::max(0.0, (now_available - swap_point) / -*slope);
  }
  return f;
}

void add_forecast_point(std::deque<std::pair<std::int64_t, std::uint64_t>>& history,
                        std::int64_t now_ms, std::uint64_t available, std::int64_t window_ms) {
  if (!history.empty() && history.back().first > now_ms) {
    history.clear();  // a clock that went back: the old points are not comparable
  }
  history.emplace_back(now_ms, available);
  while (!history.empty() && history.front().first < now_ms - window_ms) {
    history.pop_front();
  }
  // Points closer together than this are thinned: the one before the newest goes when it is
  // this close to the one before it. The newest always stays (the cliff rule reads it).
  const std::int64_t spacing = window_ms / static_cast<std::int64_t>(kForecastMaxPoints);
  const std::size_t n = history.size();
  if (n >= 3 && history[n - 2].first - history[n - 3].first < spacing) {
    history.erase(history.begin() + static_cast<std::ptrdiff_t>(n - 2));
  }
  // A denser history (a state file from an older version) is thinned whole, once.
  if (history.size() > 2 * kForecastMaxPoints) {
    std::deque<std::pair<std::int64_t, std::uint64_t>> thinned;
    for (std::size_t i = 0; i + 1 < history.size(); ++i) {
      if (thinned.empty() || history[i].first - thinned.back().first >= spacing) {
        thinned.push_back(history[i]);
      }
    }
    thinned.push_back(history.back());
    history = std::move(thinned);
  }
}

Decision decide(const Snapshot& snapshot, PolicyState previous, const config::Config& config,
                std::int64_t now_ms) {
  Decision d;
  d.state = std::move(previous);
  Plan& plan = d.plan;
  PolicyState& next = d.state;

  // ksmd's share of one core since the last tick, for the KSM controller's CPU budget.
  const double since_s = next.previous_host && now_ms > next.previous_host_ms
                             ? static_cast<double>(now_ms - next.previous_host_ms) / 1000.0
                             : 0;
  std::optional<double> ksmd_cpu_ratio;
  const std::optional<double> ksmd_cpu =
      snapshot.ksm ? snapshot.ksm->ksmd_cpu_seconds_total : std::nullopt;
  if (ksmd_cpu && next.ksmd_cpu_seconds_total && since_s > 0 &&
      *ksmd_cpu >= *next.ksmd_cpu_seconds_total) {
    ksmd_cpu_ratio = (*ksmd_cpu - *next.ksmd_cpu_seconds_total) / since_s;
  }

  const HostView host = assess_host(snapshot, next, config, now_ms, plan);
  next.ksmd_cpu_seconds_total = ksmd_cpu;
  next.previous_host = snapshot.host;
  next.previous_host_ms = now_ms;

  std::vector<Candidate> candidates = consider_guests(snapshot, host, config, next, now_ms, plan);
  plan.headroom_above_reserve_bytes = above(host.available, host.reserve);
  for (const auto& c : candidates) {
    plan.reclaimable_bytes = saturating_add(plan.reclaimable_bytes, c.reclaimable);
  }
  const SharedReasons reasons{
      host.reason.empty() ? std::string("gives spare memory to guests in need")
                          : "gives spare memory to guests in need (" + host.reason + ")",
      host.reason, host.reason + "; no spare left, down toward what it uses"};
  fund_guests_in_need(candidates, host, reasons);
  relieve_host(candidates, host, plan, reasons);
  give_back_when_idle(candidates, host, next, now_ms);
  make_commands(candidates, host, snapshot, now_ms, plan);
  raise_alerts(candidates, host, snapshot, config, now_ms, plan, next);

  if (!snapshot.ksm) {
    return d;
  }
  if (const auto owner = yielding_to(snapshot.other_managers, Controls::ksm, config);
      !owner.empty()) {
    plan.ksm = KsmDecision{std::nullopt,
                           owner +
                               " tunes KSM on this host: memtide leaves KSM to it "
                               "(daemon.coexist: force overrides)",
                           ksmd_cpu_ratio};
  } else {
    plan.ksm =
        decide_ksm(*snapshot.ksm, snapshot.ksm_estimate, plan.host_pressure || plan.host_heading,
                   ksmd_cpu_ratio, config.ksm, next.ksm, now_ms);
  }
  return d;
}

}  // namespace memtide::policy

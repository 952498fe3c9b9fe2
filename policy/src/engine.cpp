#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unordered_map>

#include <memtide/config/units.hpp>
#include <memtide/policy/classes.hpp>
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

namespace {

using config::format_size;

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.1f s" : "%.0f s", s);
  return buf;
}

// "38% usable, target 15%", or "no fresh statistics" for a guest judged blind.
std::string guest_status(const Outcome& o) {
  if (o.blind) {
    return "no fresh statistics";
  }
  return percent(static_cast<double>(o.usable_bytes) / static_cast<double>(o.current_bytes)) +
         " usable, target " + percent(o.guest_free_ratio);
}

// Everything decide() works out about one managed VM before dividing memory.
struct Candidate {
  const VmSample* vm = nullptr;
  EffectiveBalloon settings;
  std::uint64_t usable = 0;       // the guest's usable memory (page cache counts as usable)
  std::uint64_t target_free = 0;  // usable memory the class wants it to keep
  std::uint64_t ideal = 0;        // the size at which it would keep exactly target_free
  std::uint64_t comfort = 0;      // the size at which it keeps kComfortFactor * target_free
  bool needs = false;             // below its free target, or swapping/faulting in the guest
  bool guest_swapping = false;
  bool faulting = false;  // many major faults while close to its free target
  double major_faults_per_s = 0;
  std::uint64_t want = 0;   // growth it asks for this tick (step-limited): up to comfort
  std::uint64_t spare = 0;  // what it can give under host pressure: down to ideal or floor
  std::uint64_t comfortable_spare = 0;  // what it can give to guests in need: down to comfort
  std::int64_t delta = 0;               // decided change this tick
  // Reason for the decided change: shared reasons (host pressure) are not copied per VM.
  const std::string* why = nullptr;
  // This VM's own reason, used when `why` is null; formatted only if a command results.
  enum class OwnWhy : std::uint8_t { none, stale, swapping, faulting, short_of_memory, host_idle };
  OwnWhy own_why = OwnWhy::none;
  PolicyState::Vm* memory = nullptr;  // its entry in the next state
  std::size_t outcome = 0;            // its entry in plan.outcomes
  bool blind = false;                 // statistics stale: may only grow, funded by host room
};

std::string own_reason(const Candidate& c, std::uint64_t host_available) {
  switch (c.own_why) {
    case Candidate::OwnWhy::stale:
      return "guest statistics stale (a starving guest may stop reporting): one step back toward "
             "its maximum, which cannot hurt it";
    case Candidate::OwnWhy::swapping:
    case Candidate::OwnWhy::short_of_memory:
      return std::string(c.own_why == Candidate::OwnWhy::swapping ? "guest is swapping"
                                                                  : "guest short of memory") +
             ": " +
             percent(static_cast<double>(c.usable) / static_cast<double>(c.vm->current_bytes)) +
             " usable, target " + percent(c.settings.guest_free_ratio);
    case Candidate::OwnWhy::faulting:
      return "guest is faulting pages in (" + std::to_string(std::llround(c.major_faults_per_s)) +
             " major faults/s) at " +
             percent(static_cast<double>(c.usable) / static_cast<double>(c.vm->current_bytes)) +
             " usable, target " + percent(c.settings.guest_free_ratio);
    case Candidate::OwnWhy::host_idle:
      return "host has room (" + format_size(host_available) +
             " available) and the class grows guests when the host is idle";
    case Candidate::OwnWhy::none:
      break;
  }
  return "";
}

std::uint64_t step_limit(const Candidate& c, std::uint64_t amount) {
  return c.settings.max_step_bytes > 0 ? std::min(amount, c.settings.max_step_bytes) : amount;
}

// Takes up to `amount` bytes from `pool` (candidates with something to give, per `room`),
// greedily from the one with the most room per share: a VM with twice the shares keeps its
// memory longer. Returns what was taken; records each take in the candidates' deltas.
std::uint64_t reclaim(std::vector<Candidate*>& pool, std::uint64_t amount,
                      std::uint64_t (*room)(const Candidate&), const std::string& why) {
  if (amount == 0 || pool.empty()) {
    return 0;
  }
  // Sort once on precomputed keys; ties keep the pool's order (the snapshot's, by name).
  std::vector<std::pair<double, std::size_t>> order;
  order.reserve(pool.size());
  for (std::size_t i = 0; i < pool.size(); ++i) {
    order.emplace_back(
        -static_cast<double>(room(*pool[i])) / std::max(1u, pool[i]->settings.shares), i);
  }
  std::sort(order.begin(), order.end());
  std::uint64_t taken = 0;
  for (const auto& [key, index] : order) {
    Candidate* c = pool[index];
    if (taken >= amount) {
      break;
    }
    const std::uint64_t already = c->delta < 0 ? static_cast<std::uint64_t>(-c->delta) : 0;
    const std::uint64_t limit = step_limit(*c, room(*c));
    if (limit <= already) {
      continue;
    }
    const std::uint64_t take = std::min(limit - already, amount - taken);
    c->delta -= static_cast<std::int64_t>(take);
    c->why = &why;
    taken += take;
  }
  return taken;
}

std::uint64_t room_spare(const Candidate& c) {
  return c.spare;
}
std::uint64_t room_comfortable_spare(const Candidate& c) {
  return c.comfortable_spare;
}
std::uint64_t room_to_floor(const Candidate& c) {
  return c.vm->current_bytes > c.settings.floor_bytes ? c.vm->current_bytes - c.settings.floor_bytes
                                                      : 0;
}

}  // namespace

std::string Plan::explanation(const std::string& vm) const {
  const auto it = std::find_if(outcomes.begin(), outcomes.end(),
                               [&vm](const Outcome& o) { return o.vm == vm; });
  return it == outcomes.end() ? std::string() : explain(*it);
}

std::string Plan::explain(const Outcome& o) const {
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
             (o.short_at_maximum ? " (already at its maximum)" : "");
    case Outcome::Kind::deadband:
      return "unchanged: " + format_size(o.change_bytes) + " is within the deadband of " +
             format_size(o.deadband_bytes) + "; " + guest_status(o);
    case Outcome::Kind::waiting:
      return "waiting: asked for " + format_size(o.target_bytes) + ", the balloon is at " +
             format_size(o.current_bytes) + "; " + guest_status(o);
    case Outcome::Kind::hysteresis:
      return "unchanged: would reverse its last change within the " +
             config::format_duration(o.hysteresis) + " hysteresis; " + guest_status(o);
    case Outcome::Kind::changed:
      return o.change_index < balloons.size() ? balloons[o.change_index].reason : "";
  }
  return "";
}

void unsend(PolicyState& state, const BalloonChange& change) {
  const auto it = state.vms.find(change.uuid);
  if (it == state.vms.end()) {
    return;
  }
  it->second.last_change_ms = change.previous.last_change_ms;
  it->second.last_direction = change.previous.last_direction;
  it->second.last_target_bytes = change.previous.last_target_bytes;
}

SwapForecast forecast_swap(const std::deque<std::pair<std::int64_t, std::uint64_t>>& history,
                           std::uint64_t total_bytes) {
  SwapForecast f;
  f.points = history.size();
  if (history.size() < 3) {
    return f;
  }
  std::vector<double> slopes;
  slopes.reserve(history.size() * (history.size() - 1) / 2);
  for (std::size_t i = 0; i < history.size(); ++i) {
    for (std::size_t j = i + 1; j < history.size(); ++j) {
      const double dt = static_cast<double>(history[j].first - history[i].first) / 1000.0;
      if (dt > 0) {
        slopes.push_back(
            (static_cast<double>(history[j].second) - static_cast<double>(history[i].second)) / dt);
      }
    }
  }
  if (slopes.empty()) {
    return f;
  }
  const auto mid = slopes.begin() + static_cast<std::ptrdiff_t>(slopes.size() / 2);
  std::nth_element(slopes.begin(), mid, slopes.end());
  double slope = *mid;
  if (slopes.size() % 2 == 0) {
    slope = (slope + *std::max_element(slopes.begin(), mid)) / 2;
  }
  f.available_slope_bytes_per_second = slope;
  if (slope < 0) {
    const double swap_point = kSwapPointRatio * static_cast<double>(total_bytes);
    const double now_available = static_cast<double>(history.back().second);
    f.seconds_to_swap = std::max(0.0, (now_available - swap_point) / -slope);
  }
  return f;
}

Decision decide(const Snapshot& snapshot, PolicyState previous, const config::Config& config,
                std::int64_t now_ms) {
  Decision d;
  d.state = std::move(previous);
  Plan& plan = d.plan;
  PolicyState& next = d.state;
  const PolicyState& state = next;  // read before each field is overwritten below
  const auto& host = snapshot.host;
  const auto& cfg_host = config.host;
  const std::uint64_t available = host.meminfo.available_bytes;
  const std::uint64_t reserve = cfg_host.reserve_bytes;

  // --- Host: trend, forecast, swapping, pressure.
  next.available_history.emplace_back(now_ms, available);
  while (!next.available_history.empty() &&
         next.available_history.front().first < now_ms - cfg_host.swap_forecast.window.count()) {
    next.available_history.pop_front();
  }
  plan.forecast = forecast_swap(next.available_history, host.meminfo.total_bytes);

  // Swap-out and the exact PSI stall share since the last tick. PSI counts as the kernel's
  // avg10 or that share, whichever is higher: avg10 lags a sudden stall by seconds.
  // Seconds since the previous tick (0 on the first): the pace at which decisions are made.
  const double state_tick_s =
      state.previous_host ? static_cast<double>(now_ms - state.previous_host_ms) / 1000.0 : 0;
  const HostRates rates =
      state.previous_host
          ? derive_rates(*state.previous_host, host,
                         static_cast<double>(now_ms - state.previous_host_ms) / 1000.0)
          : HostRates{};
  const double swap_out_rate = rates.swap_out_bytes_per_second;
  const double psi_some = std::max(host.psi_memory ? host.psi_memory->some.avg10_ratio : 0,
                                   rates.psi_memory_some_stall_ratio);
  const double psi_full =
      std::max(host.psi_memory && host.psi_memory->full ? host.psi_memory->full->avg10_ratio : 0,
               rates.psi_memory_full_stall_ratio);
  // ksmd's share of one core since the last tick, for the KSM controller's CPU budget.
  std::optional<double> ksmd_cpu_ratio;
  const std::optional<double> ksmd_cpu =
      snapshot.ksm ? snapshot.ksm->ksmd_cpu_seconds_total : std::nullopt;
  if (ksmd_cpu && state.ksmd_cpu_seconds_total && state_tick_s > 0 &&
      *ksmd_cpu >= *state.ksmd_cpu_seconds_total) {
    ksmd_cpu_ratio = (*ksmd_cpu - *state.ksmd_cpu_seconds_total) / state_tick_s;
  }
  next.ksmd_cpu_seconds_total = ksmd_cpu;
  next.previous_host = host;
  next.previous_host_ms = now_ms;
  const bool below_reserve = available < reserve;
  const bool swapping = swap_out_rate > 0;
  const bool psi_some_high = psi_some > cfg_host.pressure.psi_some_avg10_ratio;
  const bool psi_full_high = psi_full > cfg_host.pressure.psi_full_avg10_ratio;
  const double horizon_s = static_cast<double>(cfg_host.swap_forecast.horizon.count()) / 1000.0;
  plan.host_heading = plan.forecast.seconds_to_swap && *plan.forecast.seconds_to_swap < horizon_s;
  plan.host_pressure = below_reserve || swapping || psi_some_high || psi_full_high;

  std::string host_reason;
  auto add_reason = [&host_reason](const std::string& r) {
    host_reason += (host_reason.empty() ? "" : ", ") + r;
  };
  if (below_reserve) {
    add_reason("host MemAvailable " + format_size(available) + " < reserve " +
               format_size(reserve));
  }
  if (swapping) {
    add_reason("host swapping out " + format_size(static_cast<std::uint64_t>(swap_out_rate)) +
               "/s");
  }
  if (psi_full_high) {
    add_reason("memory PSI full " + percent(psi_full) + " > " +
               percent(cfg_host.pressure.psi_full_avg10_ratio));
  }
  if (psi_some_high) {
    add_reason("memory PSI some " + percent(psi_some) + " > " +
               percent(cfg_host.pressure.psi_some_avg10_ratio));
  }
  if (plan.host_heading) {
    add_reason("swap predicted in " + seconds_text(*plan.forecast.seconds_to_swap) + " < " +
               seconds_text(horizon_s));
  }
  plan.host_summary = host_reason.empty() ? "host fine: MemAvailable " + format_size(available) +
                                                ", reserve " + format_size(reserve)
                                          : host_reason;

  // --- Guests: who needs memory, who has some to spare.
  std::vector<Candidate> candidates;
  candidates.reserve(snapshot.vms.size());
  plan.outcomes.reserve(snapshot.vms.size());
  std::vector<std::pair<std::string, std::string>> distressed;  // (vm, summary)
  for (const auto& vm : snapshot.vms) {
    // Each VM's memory is updated in place; entries not touched this tick are swept below.
    PolicyState::Vm& memory = next.vms[vm.uuid];
    const bool guest_swapping = memory.swap_in_bytes_total && vm.guest.swap_in_bytes_total &&
                                *vm.guest.swap_in_bytes_total > *memory.swap_in_bytes_total;
    double major_faults_per_s = 0;
    if (memory.major_faults_total && vm.guest.major_faults_total &&
        *vm.guest.major_faults_total > *memory.major_faults_total && now_ms > memory.sampled_ms) {
      major_faults_per_s =
          static_cast<double>(*vm.guest.major_faults_total - *memory.major_faults_total) /
          (static_cast<double>(now_ms - memory.sampled_ms) / 1000.0);
    }
    memory.swap_in_bytes_total = vm.guest.swap_in_bytes_total;
    memory.major_faults_total = vm.guest.major_faults_total;
    memory.sampled_ms = now_ms;
    PolicyState::Vm* memory_slot = &memory;

    Outcome& outcome = plan.outcomes.emplace_back();
    outcome.vm = vm.name;
    outcome.state = vm.state;
    outcome.stats_status = vm.stats_status;
    outcome.current_bytes = vm.current_bytes;
    const auto settings = effective_balloon(vm, config);
    if (!settings.managed) {
      outcome.kind = Outcome::Kind::unmanaged;
      outcome.unmanaged_reason = settings.unmanaged_reason;
      continue;
    }
    if (vm.state != VmState::running) {
      outcome.kind = Outcome::Kind::not_running;
      continue;
    }
    if (vm.stats_status == GuestStatsStatus::stale && vm.current_bytes < settings.max_bytes &&
        !plan.host_pressure && !plan.host_heading) {
      // A guest starving for memory may stop reporting (its balloon driver cannot run). Giving
      // memory back is the one change that cannot hurt a guest, so while the host has room a
      // stale guest gets one step back toward its maximum per tick; it is never shrunk blind.
      Candidate c;
      c.vm = &vm;
      c.memory = memory_slot;
      c.outcome = plan.outcomes.size() - 1;
      c.settings = settings;
      c.blind = true;
      c.needs = true;
      c.want = step_limit(c, settings.max_bytes - vm.current_bytes);
      c.ideal = settings.max_bytes;
      candidates.push_back(c);
      continue;
    }
    if (vm.stats_status != GuestStatsStatus::ok) {
      outcome.kind = Outcome::Kind::no_statistics;
      continue;
    }
    // Usable memory, never MemFree alone: page cache is reclaimable. Guests that do not report
    // "usable" (older drivers) are judged by free + page cache.
    std::optional<std::uint64_t> usable = vm.guest.usable_bytes;
    if (!usable && vm.guest.unused_bytes) {
      // Saturating: both figures come from the guest.
      const std::uint64_t caches = vm.guest.disk_caches_bytes.value_or(0);
      usable = *vm.guest.unused_bytes > UINT64_MAX - caches ? UINT64_MAX
                                                            : *vm.guest.unused_bytes + caches;
    }
    if (!usable || vm.current_bytes == 0) {
      outcome.kind = Outcome::Kind::no_usable_figure;
      continue;
    }
    Candidate c;
    c.vm = &vm;
    c.memory = memory_slot;
    c.outcome = plan.outcomes.size() - 1;
    c.settings = settings;
    c.usable = std::min(*usable, vm.current_bytes);
    const double g = settings.guest_free_ratio;
    c.target_free = static_cast<std::uint64_t>(g * static_cast<double>(vm.current_bytes));
    // The size at which usable memory is exactly the free target: in use / (1 - g).
    const double in_use = static_cast<double>(vm.current_bytes - c.usable);
    c.ideal = static_cast<std::uint64_t>(in_use / (1.0 - g));
    c.ideal = std::clamp(c.ideal, settings.floor_bytes, settings.max_bytes);
    // Guests are grown to, and outside host pressure shrunk to, a comfort point above the free
    // target, so a guest needs its usable share to drift by a quarter of the target before it
    // is resized again (without this band a guest hovering at its target would be resized on
    // every drift, back and forth through the guests that fund it).
    const double g_comfort = std::min(kComfortFactor * g, (1.0 + g) / 2);
    c.comfort = static_cast<std::uint64_t>(in_use / (1.0 - g_comfort));
    c.comfort = std::clamp(c.comfort, settings.floor_bytes, settings.max_bytes);
    c.guest_swapping = guest_swapping;
    // Page-ins at a high rate while the guest is already inside its comfort band mean its
    // working set no longer fits (it is re-reading what it just evicted): give it memory
    // before it falls below its target.
    c.major_faults_per_s = major_faults_per_s;
    c.faulting = major_faults_per_s > kGuestMajorFaultsPerSecond &&
                 static_cast<double>(c.usable) < g_comfort * static_cast<double>(vm.current_bytes);
    c.needs = c.usable < c.target_free || guest_swapping || c.faulting;
    if (c.needs && vm.current_bytes < settings.max_bytes) {
      std::uint64_t want = c.comfort > vm.current_bytes ? c.comfort - vm.current_bytes : 0;
      if (guest_swapping) {
        want = std::max(want, settings.max_step_bytes);  // swapping: at least one full step
      }
      c.want = step_limit(c, std::min(want, settings.max_bytes - vm.current_bytes));
    }
    const std::uint64_t keep = std::max(c.ideal, settings.floor_bytes);
    c.spare = !c.needs && vm.current_bytes > keep ? vm.current_bytes - keep : 0;
    c.comfortable_spare =
        !c.needs && vm.current_bytes > c.comfort ? vm.current_bytes - c.comfort : 0;
    if (vm.current_bytes <= settings.floor_bytes + settings.deadband_bytes && c.needs) {
      distressed.emplace_back(vm.name, "at its floor " + format_size(settings.floor_bytes) +
                                           " with " + format_size(c.usable) + " usable (target " +
                                           format_size(c.target_free) + ")" +
                                           (guest_swapping ? ", swapping" : ""));
    }
    candidates.push_back(c);
  }
  std::erase_if(next.vms,
                [now_ms](const auto& entry) { return entry.second.sampled_ms != now_ms; });

  // --- Dividing memory.
  std::vector<Candidate*> needy;
  std::vector<Candidate*> spare_pool;
  for (auto& c : candidates) {
    if (c.want > 0 && !(c.blind && plan.host_pressure)) {
      needy.push_back(&c);
    }
    if (c.spare > 0) {
      spare_pool.push_back(&c);
    }
  }
  const std::int64_t host_room =
      static_cast<std::int64_t>(available) - static_cast<std::int64_t>(reserve);

  // Reasons shared by many VMs; they must outlive every Candidate that points at them.
  const std::string feed_why = plan.host_pressure
                                   ? "gives spare memory to guests in need (" + host_reason + ")"
                                   : std::string("gives spare memory to guests in need");
  const std::string& pressure_why = host_reason;
  const std::string squeeze_why = host_reason + "; no spare left, down toward the floor";

  // 1. Guests in need first. The host funds them while it has room above its reserve and no
  //    pressure; otherwise the memory comes from guests with spare.
  std::uint64_t total_want = 0;
  for (const Candidate* c : needy) {
    total_want += c->want;
  }
  std::uint64_t budget = 0;
  if (total_want > 0) {
    const std::uint64_t from_host =
        plan.host_pressure || host_room <= 0 ? 0 : std::min<std::uint64_t>(total_want, host_room);
    budget = from_host;
    if (budget < total_want) {
      budget += reclaim(spare_pool, total_want - budget,
                        plan.host_pressure ? room_spare : room_comfortable_spare, feed_why);
    }
    // Grant in order of urgency (swapping first, then least usable per share), each its want.
    std::sort(needy.begin(), needy.end(), [](const Candidate* a, const Candidate* b) {
      if (a->guest_swapping != b->guest_swapping) {
        return a->guest_swapping;
      }
      const double ua = static_cast<double>(a->usable) / std::max(1u, a->settings.shares);
      const double ub = static_cast<double>(b->usable) / std::max(1u, b->settings.shares);
      return ua != ub ? ua < ub : a->vm->name < b->vm->name;
    });
    std::uint64_t left = budget;
    for (Candidate* c : needy) {
      const std::uint64_t grant = std::min(c->want, left);
      left -= grant;
      c->delta += static_cast<std::int64_t>(grant);
      c->own_why = c->blind            ? Candidate::OwnWhy::stale
                   : c->guest_swapping ? Candidate::OwnWhy::swapping
                   : c->usable >= c->target_free && c->faulting
                       ? Candidate::OwnWhy::faulting
                       : Candidate::OwnWhy::short_of_memory;
    }
  }

  // 2. Host pressure: reclaim the reserve deficit (or a step, when pressure shows without a
  //    deficit) from guests with spare, most spare per share first. Only when spare memory
  //    cannot cover the deficit at all and the host is in real trouble (swapping, memory fully
  //    stalled, or below half its reserve) are guests squeezed toward their floors, into need.
  if (plan.host_pressure || plan.host_heading) {
    std::uint64_t amount = below_reserve ? reserve - available : 0;
    std::uint64_t spare_total = 0;
    for (const Candidate* c : spare_pool) {
      spare_total += c->spare;
    }
    if (amount == 0 && plan.host_pressure) {
      amount = spare_total;  // pressure without a deficit: take what is spare, step-limited
    } else if (amount == 0) {
      // Only heading for swap: what the trend says will be missing at the horizon, paced over
      // the ticks left before the predicted swap (a tick's share of it now; the next ticks take
      // more if the trend holds, nothing if it stops). A host losing memory fast is not
      // starved of reclaim this way, and a trend that ends by itself costs few balloon actions.
      const double projected = static_cast<double>(available) +
                               plan.forecast.available_slope_bytes_per_second * horizon_s;
      const double shortfall = static_cast<double>(reserve) - projected;
      const double tick_s = state_tick_s > 0 ? state_tick_s : 10.0;
      const double share = std::min(1.0, tick_s / std::max(1.0, *plan.forecast.seconds_to_swap));
      amount = shortfall > 0 ? static_cast<std::uint64_t>(shortfall * share) : 0;
    }
    const std::uint64_t got = reclaim(spare_pool, amount, room_spare, pressure_why);
    const bool hard_pressure = swapping || psi_full_high || available < reserve / 2;
    if (got < amount && below_reserve && spare_total < amount && hard_pressure) {
      std::vector<Candidate*> all;
      for (auto& c : candidates) {
        if (c.delta <= 0 && !c.guest_swapping) {
          all.push_back(&c);
        }
      }
      reclaim(all, amount - got, room_to_floor, squeeze_why);
    }
  } else if (host_room > 0) {
    // 3. An idle host gives memory back only to classes that ask for it.
    std::uint64_t room = static_cast<std::uint64_t>(host_room);
    for (auto& c : candidates) {
      if (!c.settings.grow_when_host_idle || c.delta != 0 || room == 0 ||
          c.vm->current_bytes >= c.settings.max_bytes) {
        continue;
      }
      const std::uint64_t grow =
          std::min(step_limit(c, c.settings.max_bytes - c.vm->current_bytes), room);
      room -= grow;
      c.delta = static_cast<std::int64_t>(grow);
      c.own_why = Candidate::OwnWhy::host_idle;
    }
  }

  // --- Turning deltas into commands: floor/maximum, deadband, hysteresis.
  for (auto& c : candidates) {
    const VmSample& vm = *c.vm;
    auto& memory = *c.memory;
    const std::int64_t current = static_cast<std::int64_t>(vm.current_bytes);
    const std::int64_t wanted = current + c.delta;
    std::int64_t target =
        std::clamp<std::int64_t>(wanted, static_cast<std::int64_t>(c.settings.floor_bytes),
                                 static_cast<std::int64_t>(c.settings.max_bytes));
    // A balloon outside its limits (a floor raised by a reload or new metadata, a size set by
    // hand) is moved inside them even when nothing else would change it; the command says so.
    const bool clamped_only = c.delta == 0 && target != wanted;
    // A balloon still on its way to the last target (libvirt reports its size with a lag) is
    // not sent a target short of that one in the same direction: that would undo part of the
    // last command. The new target is at least as far as the one in flight.
    if (memory.last_target_bytes && memory.last_direction != 0) {
      const auto in_flight = static_cast<std::int64_t>(*memory.last_target_bytes);
      if (memory.last_direction > 0 && target > current && in_flight > current) {
        target = std::max(target, in_flight);
      } else if (memory.last_direction < 0 && target < current && in_flight < current) {
        target = std::min(target, in_flight);
      }
    }
    const std::int64_t change = target - current;
    Outcome& outcome = plan.outcomes[c.outcome];
    outcome.blind = c.blind;
    outcome.usable_bytes = c.usable;
    outcome.guest_free_ratio = c.settings.guest_free_ratio;
    if (change == 0) {
      outcome.kind = Outcome::Kind::unchanged;
      outcome.short_at_maximum = c.needs && vm.current_bytes >= c.settings.max_bytes;
      continue;
    }
    const std::uint64_t magnitude = static_cast<std::uint64_t>(change > 0 ? change : -change);
    if (magnitude < c.settings.deadband_bytes) {
      outcome.kind = Outcome::Kind::deadband;
      outcome.change_bytes = magnitude;
      outcome.deadband_bytes = c.settings.deadband_bytes;
      continue;
    }
    // A balloon that has not reached the last target (a guest that cannot give more, or is
    // still working on it) is not sent the same command every tick; it is retried after the
    // class's hysteresis.
    if (memory.last_target_bytes == static_cast<std::uint64_t>(target) &&
        now_ms - memory.last_change_ms <
            std::max<std::int64_t>(c.settings.hysteresis.count(), 10'000)) {
      outcome.kind = Outcome::Kind::waiting;
      outcome.target_bytes = static_cast<std::uint64_t>(target);
      continue;
    }
    const int direction = change > 0 ? 1 : -1;
    const bool reversing = memory.last_direction != 0 && memory.last_direction != direction;
    if (reversing && now_ms - memory.last_change_ms < c.settings.hysteresis.count() &&
        !(direction > 0 && c.guest_swapping)) {
      outcome.kind = Outcome::Kind::hysteresis;
      outcome.hysteresis = c.settings.hysteresis;
      continue;
    }
    outcome.kind = Outcome::Kind::changed;
    outcome.change_index = plan.balloons.size();
    BalloonChange bc;
    bc.vm = vm.name;
    bc.uuid = vm.uuid;
    bc.from_bytes = vm.current_bytes;
    bc.to_bytes = static_cast<std::uint64_t>(target);
    bc.floor_bytes = c.settings.floor_bytes;
    std::string why_text = c.why != nullptr ? *c.why : own_reason(c, available);
    if (target != wanted && (clamped_only || why_text.empty())) {
      why_text = direction > 0 ? "below its floor " + format_size(c.settings.floor_bytes) +
                                     ": raised to the floor"
                               : "above its maximum " + format_size(c.settings.max_bytes) +
                                     ": lowered to the maximum";
      bc.cause = Cause::limits;
    } else if (c.why == &feed_why) {
      bc.cause = Cause::funding;
    } else if (c.why == &squeeze_why) {
      bc.cause = Cause::squeeze;
    } else if (c.why == &pressure_why) {
      bc.cause = plan.host_pressure ? Cause::host_pressure : Cause::swap_forecast;
    } else {
      bc.cause = c.own_why == Candidate::OwnWhy::stale       ? Cause::stale
                 : c.own_why == Candidate::OwnWhy::host_idle ? Cause::host_idle
                                                             : Cause::guest_need;
    }
    bc.reason = why_text + "; " + vm.name + " has " + guest_status(outcome) + ": " +
                (direction > 0 ? "grow " : "shrink ") + format_size(magnitude);
    plan.balloons.push_back(std::move(bc));
    plan.balloons.back().previous = {memory.last_change_ms, memory.last_direction,
                                     memory.last_target_bytes};
    memory.last_change_ms = now_ms;
    memory.last_direction = direction;
    memory.last_target_bytes = static_cast<std::uint64_t>(target);
  }

  // --- Alerts, with resolution hysteresis.
  std::vector<Alert> raised;
  if (swapping || (psi_full_high && below_reserve)) {
    raised.push_back({"host-swapping", "", Severity::critical,
                      swapping ? "host is swapping out " +
                                     format_size(static_cast<std::uint64_t>(swap_out_rate)) + "/s"
                               : "host memory fully stalled below its reserve",
                      now_ms});
  }
  if (plan.host_heading) {
    raised.push_back({"host-swap-forecast", "", Severity::warning,
                      "host predicted to swap in " + seconds_text(*plan.forecast.seconds_to_swap) +
                          " (MemAvailable " + format_size(available) + ", falling " +
                          format_size(static_cast<std::uint64_t>(
                              -plan.forecast.available_slope_bytes_per_second)) +
                          "/s)",
                      now_ms});
  }
  if (psi_full_high || psi_some_high) {
    raised.push_back(
        {"host-memory-pressure", "", psi_full_high ? Severity::critical : Severity::warning,
         "memory PSI some " + percent(psi_some) + ", full " + percent(psi_full), now_ms});
  }
  for (const auto& [vm, summary] : distressed) {
    std::string text = vm;
    text += ' ';
    text += summary;
    raised.push_back({"guest-distress", vm, Severity::warning, std::move(text), now_ms});
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

  // --- KSM: whether ksmd should merge, from the page scanner's estimate.
  if (snapshot.ksm) {
    plan.ksm =
        decide_ksm(*snapshot.ksm, snapshot.ksm_estimate, plan.host_pressure || plan.host_heading,
                   ksmd_cpu_ratio, config.ksm, next.ksm, now_ms);
  }
  return d;
}

}  // namespace memtide::policy

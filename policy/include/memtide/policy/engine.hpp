// The policy engine: one pure function from what was collected to what should be done.
//
//   decide(snapshot, previous state, config, now_ms) -> {plan, next state}
//
// No I/O, no clock reads (now_ms is an input), no randomness: the same inputs give the same
// plan, so the daemon, replays of recorded snapshots and tests all run the same code.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>
#include <memtide/policy/ksm.hpp>

namespace memtide::policy {

enum class Severity { warning, critical };
const char* to_string(Severity severity);

// How bad the host's memory situation is; each level allows deeper reclaim than the one before.
enum class HostLevel : std::uint8_t {
  ok,        // nothing to do for the host
  heading,   // swap forecast within the horizon: reclaim the shortfall, paced by the time left
  tight,     // MemAvailable below the reserve, or memory PSI "some" high, without swapping or
             // a full stall: mild; guests keep their comfort band and burst headroom
  critical,  // swapping at a real rate, memory fully stalled, or PSI high below the reserve:
             // guests give down to their free target, then to what they use plus their burst
};
const char* to_string(HostLevel level);  // "ok", "heading", "tight", "critical"

// An alert that is firing now. Identity is (name, subject).
struct Alert {
  // host-swap-forecast, host-swapping, host-memory-pressure, guest-distress (short at its
  // floor), guest-starving (short above its floor, its growth not granted), guest-stale (no
  // fresh statistics while the host is tight or critical), other-memory-manager (memtide leaves
  // balloons or KSM to another manager: policy/coexist.hpp)
  std::string name;
  std::string subject;  // "" for host alerts; the VM's name for guest alerts
  Severity severity = Severity::warning;
  std::string summary;        // one line for humans
  std::int64_t since_ms = 0;  // when it started firing
  friend bool operator==(const Alert&, const Alert&) = default;
};

// Every alert name memtide raises: decide()'s and ServiceAlerts' (service_alerts.hpp).
inline constexpr const char* kAllAlertNames[] = {"host-swap-forecast",   "host-swapping",
                                                 "host-memory-pressure", "guest-distress",
                                                 "guest-starving",       "guest-stale",
                                                 "other-memory-manager", "balloon-command-failed",
                                                 "libvirt-down",         "libvirt-connection-down"};

// The name Alertmanager and the shipped Prometheus rules give an alert: "Memtide" and its name
// in CamelCase ("host-swap-forecast" -> "MemtideHostSwapForecast"). Both paths send the same
// alertname and labels, so Alertmanager sees one alert whichever delivered it.
std::string alertname(std::string_view name);

// Why a balloon command was issued, as a category (metrics count commands by it).
enum class Cause : std::uint8_t {
  guest_need,     // the guest was short of memory, swapping or faulting
  funding,        // gave spare memory to guests in need
  host_pressure,  // reclaim under host pressure (reserve deficit, PSI, swapping)
  swap_forecast,  // reclaim ahead of a predicted swap
  squeeze,        // pushed toward its floor: spare memory could not cover the deficit
  stale,          // one step back toward maximum for a guest whose statistics stopped
  host_idle,      // grown because the host has room and the class asks for it
  limits,         // moved back inside [floor, maximum], which the balloon was outside
};
const char* to_string(Cause cause);  // "guest-need", "funding", ...
inline constexpr Cause kAllCauses[] = {Cause::guest_need,    Cause::funding, Cause::host_pressure,
                                       Cause::swap_forecast, Cause::squeeze, Cause::stale,
                                       Cause::host_idle,     Cause::limits};

// One balloon command, with the reason an operator reads in the journal.
struct BalloonChange {
  std::string vm;
  std::string uuid;
  std::string connection;  // VmSample::connection
  std::string key() const { return vm_key(connection, uuid); }
  std::uint64_t from_bytes = 0;
  std::uint64_t to_bytes = 0;     // already within [floor_bytes, the VM's maximum]
  std::uint64_t floor_bytes = 0;  // passed on to the actuator, which clamps again
  Cause cause = Cause::guest_need;
  std::string reason;
  // What the VM's PolicyState entry held before this command was recorded in it (see unsend).
  struct Previous {
    std::int64_t last_change_ms = 0;
    std::int64_t last_change_unix_ms = 0;
    int last_direction = 0;
    std::optional<std::uint64_t> last_target_bytes;
    std::optional<std::uint64_t> last_from_bytes;
    // What a shrink's re-read measure replaced (PolicyState::Vm's fields of the same names).
    std::optional<std::int64_t> last_shrink_ms;
    double faults_before_shrink_per_second = -1;
    double reads_before_shrink_per_second = -1;
    std::optional<std::uint64_t> size_before_shrink_bytes;
    friend bool operator==(const Previous&, const Previous&) = default;
  } previous;
  friend bool operator==(const BalloonChange&, const BalloonChange&) = default;
};

// Estimated time until the host must swap, from the trend of MemAvailable over
// host.swap_forecast.window: the Theil-Sen slope (the median of pairwise slopes, robust to
// spikes) once there are kForecastMinPoints samples, or the last step when it is a cliff (a fall
// of kCliffShareOfTotal of MemTotal or more in one step), whichever falls faster.
struct SwapForecast {
  std::optional<double> seconds_to_swap;  // nullopt: MemAvailable is not falling
  double available_slope_bytes_per_second = 0;
  std::size_t points = 0;  // samples in the window
  bool cliff = false;      // the slope is the last step's, a cliff the trend has not seen yet
  friend bool operator==(const SwapForecast&, const SwapForecast&) = default;
};

// Why one VM was or was not changed this tick, as data: decide() records it for every VM, and it
// is rendered into a sentence only when someone asks (Plan::explanation), which keeps a tick over
// thousands of VMs free of string formatting.
struct Outcome {
  enum class Kind : std::uint8_t {
    unmanaged,         // unmanaged_reason says why
    not_running,       // state
    no_statistics,     // stats_status is not ok (memtide does not shrink a guest blind)
    no_usable_figure,  // the guest reports neither usable nor free memory
    unchanged,         // nothing to do
    deadband,          // the change (change_bytes) is below the deadband
    waiting,           // asked for target_bytes earlier; the balloon has not got there
    hysteresis,        // would reverse its last change within the hysteresis
    settling,          // its statistics predate its last balloon change: no spare is judged
    changed,           // a balloon command was issued: balloons[change_index]
  };
  std::string vm;
  Kind kind = Kind::unchanged;
  VmState state = VmState::other;
  GuestStatsStatus stats_status = GuestStatsStatus::ok;
  std::string unmanaged_reason;
  bool blind = false;             // judged without fresh statistics (stale guest)
  bool short_at_maximum = false;  // in need but already at its maximum
  // Cannot survive a burst by itself (no autodeflate, no guest swap seen): outside a critical
  // host it keeps kSelfRescueHeadroomShare of its maximum free on top of what it uses.
  bool keeps_burst_room = false;
  std::string pinned_by;  // EffectiveBalloon::pinned_by: never shrunk, said in the explanation
  // Free page reporting on: the part of its size the host does not hold (not resident), which
  // no shrink can free; said in the explanation.
  std::uint64_t unresident_bytes = 0;
  std::uint64_t current_bytes = 0;  // balloon size
  std::uint64_t floor_bytes = 0;    // its effective floor (class, metadata), managed or not
  std::uint64_t usable_bytes = 0;
  double guest_free_ratio = 0;  // the class's target
  std::uint64_t change_bytes = 0;
  std::uint64_t target_bytes = 0;
  std::uint64_t deadband_bytes = 0;
  std::chrono::milliseconds hysteresis{0};
  std::size_t change_index = 0;
  friend bool operator==(const Outcome&, const Outcome&) = default;
};

struct Plan {
  std::vector<BalloonChange> balloons;
  std::vector<Alert> alerts;  // firing now, sorted by (name, subject)
  SwapForecast forecast;
  HostLevel host_level = HostLevel::ok;
  bool host_pressure = false;     // host_level is tight or critical
  bool host_heading = false;      // swap predicted within the horizon, near the swap point
                                  // (kForecastActsBelowReserveFactor): the forecast acts
  bool host_paying_back = false;  // swapping in at swap_rate or more with swap in use: the
                                  // host funds no growth except for guests in distress
  std::string host_summary;       // "MemAvailable 1.2 GiB < reserve 2 GiB" or "host fine: ..."
  // What a scheduler may still place on this host: MemAvailable above the reserve, and what the
  // policy could take from guests above their needs (comfort band, burst room, the room kept by
  // guests that cannot rescue themselves) and floors without pressing any of them.
  std::uint64_t headroom_above_reserve_bytes = 0;
  std::uint64_t reclaimable_bytes = 0;
  std::vector<Outcome> outcomes;   // one per VM, in the snapshot's order
  std::optional<KsmDecision> ksm;  // none when the host has no KSM
  // Why `vm` was or was not changed, as one sentence; "" when the VM was not in the snapshot.
  std::string explanation(const std::string& vm) const;
  // The sentence for one of this plan's outcomes.
  std::string explain(const Outcome& outcome) const;
  friend bool operator==(const Plan&, const Plan&) = default;

 private:
  std::string explain_kind(const Outcome& outcome) const;  // explain() without the pin note
};

// What decide() remembers between ticks.
struct PolicyState {
  std::deque<std::pair<std::int64_t, std::uint64_t>> available_history;  // (ms, MemAvailable)
  std::optional<HostSample> previous_host;  // for rates since the last tick
  std::int64_t previous_host_ms = 0;
  std::optional<std::int64_t> last_not_ok_ms;  // last tick the host was not ok or paid back swap
  struct Vm {
    std::int64_t last_change_ms = 0;
    int last_direction = 0;                          // +1 grew, -1 shrank, 0 never changed
    std::optional<std::uint64_t> last_target_bytes;  // what the last command asked for
    // The balloon's size when the last command was sent: the command is in flight only while the
    // balloon lies between this and its target (unset in state files written before it).
    std::optional<std::uint64_t> last_from_bytes;
    std::int64_t last_change_unix_ms = 0;  // wall clock of the last command, against which the
                                           // guest's statistics' last update is compared
    std::optional<std::uint64_t> swap_in_bytes_total;
    std::optional<std::uint64_t> major_faults_total;
    std::optional<std::uint64_t> in_use_bytes;  // balloon size - usable at sampled_ms
    // When the guest reported the figures above (its statistics' last update, whole seconds;
    // unset when not given): rates are taken over the time between two reports.
    std::optional<std::int64_t> faults_report_unix_s;  // of major_faults_total
    std::optional<std::int64_t> in_use_report_unix_s;  // of in_use_bytes
    std::uint64_t burst_bytes = 0;       // largest rise of in-use memory between two ticks recently
    std::int64_t burst_ms = 0;           // when burst_bytes was seen (forgotten after kBurstMemory)
    double major_faults_per_second = 0;  // at sampled_ms
    double faults_before_shrink_per_second = -1;  // at the last shrink; -1: none recorded
    // When memtide last shrank it (unset: never, or a state file written before it was kept): a
    // rise of page-ins within cache_protection of it is re-reads, whatever was given back since.
    std::optional<std::int64_t> last_shrink_ms;
    // Its disks' read counter as last asked (VmSample::disk_read_bytes_total, at
    // disk_reads_at_ms on the collector's clock) and the rate between the last two asks.
    std::optional<std::uint64_t> disk_read_bytes_total;
    std::int64_t disk_reads_at_ms = 0;
    double disk_reads_per_second = 0;            // bytes/s
    double reads_before_shrink_per_second = -1;  // bytes/s at the last shrink; -1: none recorded
    // The balloon's size before the run of shrinks the last one belongs to (shrinks within
    // cache_protection of each other): a guest re-reading what they evicted is given back up to
    // it, no further (unset: none recorded).
    std::optional<std::uint64_t> size_before_shrink_bytes;
    std::int64_t cache_protected_until_ms = 0;
    std::int64_t sampled_ms = 0;
    friend bool operator==(const Vm&, const Vm&) = default;
  };
  std::unordered_map<std::string, Vm> vms;  // by VmSample::key()
  // The entries of `vms` in the order of the last snapshot decided on, so that the next tick,
  // whose VMs usually come in the same order, finds each without hashing its UUID. A cache, not
  // state: a copy starts without it, it is never compared or saved, and it stays valid only as
  // long as nothing erases from `vms` but decide() (inserting is fine).
  class VmOrder {
   public:
    VmOrder() = default;
    VmOrder(const VmOrder&) {}
    VmOrder& operator=(const VmOrder&) {
      entries.clear();
      return *this;
    }
    VmOrder(VmOrder&&) noexcept = default;
    VmOrder& operator=(VmOrder&&) noexcept = default;
    ~VmOrder() = default;
    friend bool operator==(const VmOrder&, const VmOrder&) { return true; }
    std::vector<std::pair<const std::string, Vm>*> entries;
  };
  VmOrder vm_order;
  struct AlertMemory {
    Alert alert;
    int clear_ticks = 0;  // consecutive ticks the condition has been false
    friend bool operator==(const AlertMemory&, const AlertMemory&) = default;
  };
  std::map<std::pair<std::string, std::string>, AlertMemory> alerts;
  std::optional<double> ksmd_cpu_seconds_total;  // at previous_host_ms, for ksmd's CPU share
  KsmMemory ksm;
  friend bool operator==(const PolicyState&, const PolicyState&) = default;
};

struct Decision {
  Plan plan;
  PolicyState state;
};

// MemAvailable below this share of MemTotal counts as "the host must swap": the kernel's
// watermarks sit at about 1 % of memory on typical hosts.
inline constexpr double kSwapPointRatio = 0.01;
// Guests in need are grown to the size at which they keep this multiple of their class's
// guest_free target (at most halfway to 100 %), and guests with spare memory are shrunk no further
// than that outside host pressure: the band between the target and this point keeps a guest near
// its target from being resized on every small drift.
inline constexpr double kComfortFactor = 1.25;
// Major faults per second inside a guest above which it counts as short of memory while it is
// within its comfort band (a guest with plenty free may fault pages in from its disks freely).
inline constexpr double kGuestMajorFaultsPerSecond = 100;
// A guest re-reading what it evicted (faulting, above) asks for this many seconds of its re-reads
// (major faults x page size) per tick, within max_step: growth in proportion to how much of its
// working set is missing, where its free target alone would grow it by the deadband.
inline constexpr double kRereadFundingSeconds = 60;
// A guest re-reading what a shrink evicted may be grown back from the host's reserve while the
// host is neither critical nor heading for swap, down to MemAvailable at this share of the
// reserve: lost work ranks between the host's comfort and a guest's life (a guest in distress
// may go down to half the reserve). Without it a host below its reserve left such guests
// re-reading their hot sets from disk for good (real guests, scripts/bench-overcommit --hot 320:
// throughput -84 %); with the half, hosts dipped toward swap more often (memtide-sim's daily
// scenario at 1.5x: host swap-out 0.41 -> 3.3 GiB).
inline constexpr double kRereadReserveShare = 0.75;
inline constexpr std::uint64_t kGuestPageBytes = 4096;  // what one major fault reads (x86-64)
// An alert resolves only after its condition has been false for this many ticks in a row.
inline constexpr int kAlertClearTicks = 3;
// The forecast keeps at most this many points over its window (older ones thinned evenly), so a
// tick costs the same whatever the window and the tick interval; it fits a trend only from
// kForecastMinPoints points (three points and one dip are not a trend).
inline constexpr std::size_t kForecastMaxPoints = 64;
inline constexpr std::size_t kForecastMinPoints = 4;
// A fall of MemAvailable by this share of MemTotal in one step is a cliff: forecast at once.
inline constexpr double kCliffShareOfTotal = 0.02;
// A guest that cannot rescue itself from a sudden burst (its balloon has no autodeflate and it has
// never swapped) keeps this share of its maximum usable on top of what it uses, unless the host is
// critical: with only its comfort band such a guest dies ("System is deadlocked on memory") when
// it writes a few hundred MiB faster than its balloon can be grown, and a host below its reserve
// but neither swapping nor stalling does not need that memory urgently. The same share caps the
// burst headroom below.
inline constexpr double kSelfRescueHeadroomShare = 0.25;
// A guest's largest recent rise of in-use memory between two ticks is kept as burst headroom,
// which no reclaim takes, for this long after it was seen.
inline constexpr std::int64_t kBurstMemoryMs = 30LL * 60 * 1000;
// A swap forecast acts (shrinks guests) only while MemAvailable is at most this factor of the
// reserve: near the swap point. Above it a forecast is a warning (the host-swap-forecast alert,
// status) and a reason to prepare, not to take guests' headroom while the host is comfortable: a
// fast fall far above the reserve is as often a process starting or a guest booting as a
// runaway, and the reserve rule still acts the moment MemAvailable crosses the reserve.
inline constexpr double kForecastActsBelowReserveFactor = 2.0;
// Giving memory back on an idle host stops this factor of the reserve above MemAvailable, so a
// give-back never pushes the host back under its reserve (and into reclaiming what it gave).
inline constexpr double kGiveBackReserveFactor = 1.5;
// ... and starts only once the host has been free of real pressure (below the reserve, PSI,
// swapping, swap paid back) for this long, so memory just reclaimed is not handed straight back.
// A forecast alone holds give-back only while it lasts: one that proves wrong is undone at once.
inline constexpr std::int64_t kGiveBackQuietMs = 5LL * 60 * 1000;
// A guest's major faults (or its disk reads, in pages) after a shrink count as its cache working
// set evicted when they exceed twice the rate before the shrink plus this many per second.
inline constexpr double kCacheFaultRisePerSecond = 20;

// `state` is taken by value: callers move the previous tick's state in (it is updated in place,
// which keeps a tick over 10,000 VMs cheap) or pass a copy to keep theirs.
Decision decide(const Snapshot& snapshot, PolicyState state, const config::Config& config,
                std::int64_t now_ms);

// decide() records every command in the state it returns as if it were carried out (so that a
// balloon still moving is not sent the same target again). When the daemon deliberately does
// not send one (actions paused), unsend() puts the VM's entry back, so the policy asks again as
// soon as actions resume instead of waiting for a balloon that was never told to move.
void unsend(PolicyState& state, const BalloonChange& change);

// The forecast alone (exposed for tests and tools). Cost: O(n^2 log n) in history.size(), which
// decide() keeps at most about 2 * kForecastMaxPoints.
SwapForecast forecast_swap(const std::deque<std::pair<std::int64_t, std::uint64_t>>& history,
                           std::uint64_t total_bytes);

// Appends (now_ms, available) to `history`, drops points older than `window_ms` and thins it so
// that at most about kForecastMaxPoints remain, evenly spread over the window.
void add_forecast_point(std::deque<std::pair<std::int64_t, std::uint64_t>>& history,
                        std::int64_t now_ms, std::uint64_t available, std::int64_t window_ms);

}  // namespace memtide::policy

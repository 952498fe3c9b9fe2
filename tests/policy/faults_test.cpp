// The faults found in the first balloon policy, one table per fault: each case is a host and its
// guests as a collector would report them, and what an operator expects decide() to do. Every
// table failed against the first policy.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <memtide/config/loader.hpp>
#include <memtide/policy/engine.hpp>

#include "policy_fixtures.hpp"

namespace memtide::policy {
namespace {

using namespace std::chrono_literals;
constexpr std::int64_t kTickMs = 10'000;

using namespace testing;

bool firing(const Plan& p, const std::string& name, const std::string& subject = "") {
  for (const auto& a : p.alerts) {
    if (a.name == name && a.subject == subject) {
      return true;
    }
  }
  return false;
}

// Signed change of `vm`'s balloon in the plan (0: none).
std::int64_t moved(const Plan& p, const std::string& vm) {
  const auto* c = change_for(p, vm);
  return c == nullptr
             ? 0
             : static_cast<std::int64_t>(c->to_bytes) - static_cast<std::int64_t>(c->from_bytes);
}

// Decides on `s` with the host's counters advanced by `swap_out` and `swap_in` bytes per second
// over the kTickMs since a first tick that saw the host alone (rates need two samples).
Decision second_tick(Snapshot s, const config::Config& c, std::uint64_t swap_out,
                     std::uint64_t swap_in) {
  Snapshot alone = s;
  alone.vms.clear();
  const auto first = decide(alone, {}, c, 0);
  s.host.vmstat.swap_out_bytes_total += swap_out * (kTickMs / 1000);
  s.host.vmstat.swap_in_bytes_total += swap_in * (kTickMs / 1000);
  return decide(s, first.state, c, kTickMs);
}

// 1. A swap-out trickle, or a cgroup swapping at its own limit while MemAvailable is ample, is
//    not host pressure: nobody shrinks and no critical alert fires. Real swap-out below the
//    reserve is.
TEST(PolicyFaults, SwapOutCountsOnlyAtARealRateWithTheHostShort) {
  struct Case {
    const char* what;
    std::uint64_t available;
    std::uint64_t swap_out_per_s;
    bool pressure;
  };
  const std::vector<Case> cases = {
      {"trickle, host half free", 30 * GiB, 4 * KiB, false},
      {"cgroup at its limit, host half free", 30 * GiB, 8 * MiB, false},
      {"trickle below the reserve is only the reserve's business", GiB, 4 * KiB, true},
      {"real swap-out below the reserve", GiB, 8 * MiB, true},
  };
  for (const auto& k : cases) {
    auto s = host(k.available);
    s.vms = {guest("idle", 6 * GiB, 8 * GiB, 5 * GiB)};
    const auto d = second_tick(s, base_config(), k.swap_out_per_s, 0);
    EXPECT_EQ(d.plan.host_pressure, k.pressure) << k.what << ": " << d.plan.host_summary;
    EXPECT_EQ(moved(d.plan, "idle") < 0, k.pressure) << k.what;
    EXPECT_EQ(firing(d.plan, "host-swapping"), k.swap_out_per_s >= MiB && k.pressure) << k.what;
  }
}

// 2. While the host pages swap back in, it does not fund guest growth from MemAvailable, except
//    for a guest in distress.
TEST(PolicyFaults, SwapInIsADebtThatOnlyAGuestInDistressMayOverride) {
  struct Case {
    const char* what;
    std::uint64_t usable;  // of a 4 GiB guest, target 15 % = 614 MiB
    std::uint64_t swap_in_per_s;
    bool grows;
  };
  const std::vector<Case> cases = {
      {"short guest, no swap-in", 500 * MiB, 0, true},
      {"short guest while the host pays back 50 MiB/s", 500 * MiB, 50 * MiB, false},
      {"guest in distress while the host pays back", 100 * MiB, 50 * MiB, true},
  };
  for (const auto& k : cases) {
    auto s = host(20 * GiB);
    s.host.meminfo.swap_free_bytes = 12 * GiB;  // 4 GiB in swap
    s.vms = {guest("g", 4 * GiB, 8 * GiB, k.usable)};
    const auto d = second_tick(s, base_config(), 0, k.swap_in_per_s);
    EXPECT_EQ(moved(d.plan, "g") > 0, k.grows) << k.what << ": " << d.plan.explanation("g");
  }
}

// 3. Just below the reserve memtide reclaims at least as much as just above it with the same
//    trend: the forecast and the deficit both count, whichever asks more.
TEST(PolicyFaults, NeverGentlerBelowTheReserveThanAboveIt) {
  auto c = base_config();
  c.host.swap_forecast.horizon = 300s;
  c.classes[0].balloon.max_step = SizeOrRatio{8 * GiB};
  // MemAvailable falling 50 MiB/s for six ticks, ending 100 MiB above or below the reserve.
  auto reclaimed = [&c](std::int64_t end_offset) {
    PolicyState state;
    Decision d;
    // A large idle guest, whose balloon follows every command at once: what it gives is what
    // the rule asks for, not what it has.
    std::uint64_t size = 48 * GiB;
    for (int t = 0; t <= 6; ++t) {
      const std::int64_t available =
          static_cast<std::int64_t>(2 * GiB) + end_offset + (6 - t) * 500 * std::int64_t{MiB};
      auto s = host(static_cast<std::uint64_t>(available));
      s.vms = {guest("idle", size, 48 * GiB, size - 2 * GiB)};
      d = decide(s, state, c, t * kTickMs);
      state = d.state;
      if (t < 6 && !d.plan.balloons.empty()) {
        size = d.plan.balloons[0].to_bytes;
      }
    }
    return -moved(d.plan, "idle");
  };
  const auto above = reclaimed(100 * MiB);
  const auto below = reclaimed(-100 * static_cast<std::int64_t>(MiB));
  EXPECT_GT(above, 0);
  EXPECT_GE(below, above);
  EXPECT_GT(below, static_cast<std::int64_t>(100 * MiB));  // more than the deficit alone
}

// 4. Hysteresis never holds back a guest in need, swapping or not.
TEST(PolicyFaults, AGuestInNeedGrowsInsideTheHysteresis) {
  struct Case {
    const char* what;
    std::uint64_t usable;  // of a 4 GiB guest shrunk 30 s ago
    bool grows;
  };
  const std::vector<Case> cases = {
      {"2 % usable, no swap", 80 * MiB, true},
      {"12 % usable, no swap", 490 * MiB, true},
      {"40 % usable: not in need, the hysteresis holds", 1600 * MiB, false},
  };
  auto c = base_config();
  c.classes[0].balloon.grow_when_host_idle = true;  // would grow it too, but for hysteresis
  for (const auto& k : cases) {
    // Shrunk from 4.5 GiB to 4 GiB under pressure at t = 0.
    auto before = host(GiB);
    before.vms = {guest("g", 4 * GiB + 512 * MiB, 8 * GiB, 3 * GiB)};
    const auto first = decide(before, {}, c, 0);
    ASSERT_LT(moved(first.plan, "g"), 0) << first.plan.explanation("g");
    auto s = host(32 * GiB);  // half free now
    s.vms = {guest("g", 4 * GiB, 8 * GiB, k.usable)};
    const auto d = decide(s, first.state, c, 30'000);
    EXPECT_EQ(moved(d.plan, "g") > 0, k.grows) << k.what << ": " << d.plan.explanation("g");
  }
}

// 5. The forecast sees a cliff on its first tick, does not read a trend into three points, and
//    keeps a bounded history whatever the window and tick.
TEST(PolicyFaults, ForecastSeesCliffsAtOnceIgnoresThreePointDipsAndStaysBounded) {
  using History = std::deque<std::pair<std::int64_t, std::uint64_t>>;
  History cliff;
  for (int t = 0; t < 6; ++t) {
    cliff.emplace_back(t * kTickMs, 20 * GiB);
  }
  cliff.emplace_back(6 * kTickMs, 16 * GiB);  // 4 GiB of 64 in one tick
  const auto f = forecast_swap(cliff, 64 * GiB);
  ASSERT_TRUE(f.seconds_to_swap.has_value());
  EXPECT_LT(*f.seconds_to_swap, 200);  // 4 GiB per 10 s from 16 GiB: about 38 s

  const History dip = {{0, 20 * GiB}, {kTickMs, 20 * GiB}, {2 * kTickMs, 20 * GiB - 200 * MiB}};
  EXPECT_FALSE(forecast_swap(dip, 64 * GiB).seconds_to_swap.has_value());

  auto c = base_config();
  c.host.swap_forecast.window = 1h;
  PolicyState state;
  for (int t = 0; t < 600; ++t) {  // one tick a second, a slow fall
    auto d =
        decide(host(40 * GiB - static_cast<std::uint64_t>(t) * MiB), std::move(state), c, t * 1000);
    state = std::move(d.state);
  }
  EXPECT_LE(state.available_history.size(), 2 * kForecastMaxPoints);
  EXPECT_GE(state.available_history.size(), kForecastMinPoints);
}

// 6. Growth is not timid: a guest taking memory fast grows before it is short, and a guest in
//    need is never held back by the deadband.
TEST(PolicyFaults, GrowthFollowsTheTrendAndIgnoresTheDeadbandInNeed) {
  auto c = base_config();
  // 20 % usable of 4 GiB, its in-use memory rising 400 MiB per tick: short by the next tick.
  auto s = host(30 * GiB);
  s.vms = {guest("rising", 4 * GiB, 8 * GiB, 1200 * MiB)};
  const auto first = decide(s, {}, c, 0);
  s.vms = {guest("rising", 4 * GiB, 8 * GiB, 800 * MiB)};
  const auto d = decide(s, first.state, c, kTickMs);
  EXPECT_GT(moved(d.plan, "rising"), 0) << d.plan.explanation("rising");

  // 14.9 % usable: its comfort point is 130 MiB away, inside a 256 MiB deadband.
  c.classes[0].balloon.deadband_bytes = 256 * MiB;
  auto t = host(30 * GiB);
  t.vms = {guest("short", 4 * GiB, 8 * GiB, 610 * MiB)};
  const auto e = decide(t, {}, c, 0);
  EXPECT_GT(moved(e.plan, "short"), 0) << e.plan.explanation("short");
}

// 7. An idle host gives memory back by default, most shares first, keeping room above its
//    reserve.
TEST(PolicyFaults, AnIdleHostGivesMemoryBackByDefaultInShareOrder) {
  const auto defaults = config::default_config();  // one class "default", reserve 2 GiB
  const config::Config& c = *defaults;
  // 3.5 GiB above 1.5 x the reserve: half of it (1.75 GiB) goes back this tick, one step of
  // 10 % of 8 GiB (819 MiB) per guest: two guests get a step, the third what is left.
  auto s = host(3 * GiB + 3584 * MiB);
  s.vms = {guest("a-few-shares", 4 * GiB, 8 * GiB, 2 * GiB),
           guest("b-many-shares", 4 * GiB, 8 * GiB, 2 * GiB),
           guest("c-default", 4 * GiB, 8 * GiB, 2 * GiB)};
  s.vms[0].metadata.shares = 100;
  s.vms[1].metadata.shares = 5000;
  const auto d = decide(s, {}, c, 0);
  const std::int64_t step = 8 * GiB / 10;
  EXPECT_EQ(moved(d.plan, "b-many-shares"), step);
  EXPECT_EQ(moved(d.plan, "c-default"), step);
  EXPECT_EQ(moved(d.plan, "a-few-shares"), static_cast<std::int64_t>(3584 * MiB / 2) - 2 * step);
  // Below 1.5 x the reserve nothing is given back.
  s.host.meminfo.available_bytes = 2 * GiB + 900 * MiB;
  EXPECT_TRUE(decide(s, {}, c, 0).plan.balloons.empty());
}

// 8. Alerts for a guest starving above its floor, and for guests whose statistics went stale
//    while the host is pressed.
TEST(PolicyFaults, StarvingAndStaleGuestsRaiseAlerts) {
  auto c = base_config();
  auto s = host(GiB);  // below the reserve; nobody has spare
  s.vms = {guest("starving", 4 * GiB, 8 * GiB, 60 * MiB), guest("quiet", 2 * GiB, 8 * GiB, 0)};
  s.vms[1].stats_status = GuestStatsStatus::stale;
  s.vms[1].guest.usable_bytes.reset();
  const auto d = second_tick(s, c, 0, 0);
  EXPECT_TRUE(firing(d.plan, "guest-starving", "starving"));
  EXPECT_TRUE(firing(d.plan, "guest-stale", "quiet"));
  EXPECT_FALSE(firing(d.plan, "guest-distress", "starving"));  // that one is at the floor
  // With the host fine neither fires: the starving guest is fed from host room.
  auto fine = host(30 * GiB);
  fine.vms = s.vms;
  const auto e = second_tick(fine, c, 0, 0);
  EXPECT_FALSE(firing(e.plan, "guest-starving", "starving"));
  EXPECT_FALSE(firing(e.plan, "guest-stale", "quiet"));
}

// 9. Statistics the guest reported before its last balloon change do not count as spare at its
//    new size.
TEST(PolicyFaults, StatisticsOlderThanTheLastBalloonChangeAreNotSpare) {
  auto c = base_config();
  constexpr std::int64_t kWallMs = 1'800'000'000'000;
  auto s = host(GiB);  // below the reserve: every guest with spare gives a step
  s.collected_at_unix_ms = kWallMs;
  s.vms = {guest("g", 8 * GiB, 8 * GiB, 6 * GiB)};
  s.vms[0].guest.last_update_unix_s = kWallMs / 1000 - 1;
  const auto first = decide(s, {}, c, 0);
  ASSERT_EQ(moved(first.plan, "g"), -static_cast<std::int64_t>(512 * MiB));
  // Ten seconds later the balloon is at 7.5 GiB but the guest has not reported since: its 6 GiB
  // usable was measured at 8 GiB.
  s.collected_at_unix_ms = kWallMs + kTickMs;
  s.vms[0].current_bytes = 7 * GiB + 512 * MiB;
  const auto stale = decide(s, first.state, c, kTickMs);
  EXPECT_EQ(moved(stale.plan, "g"), 0) << stale.plan.explanation("g");
  // Once it reports again (5.5 GiB usable at 7.5 GiB), it gives its next step.
  s.vms[0].guest.last_update_unix_s = (kWallMs + kTickMs) / 1000;
  s.vms[0].guest.usable_bytes = 5 * GiB + 512 * MiB;
  const auto fresh = decide(s, stale.state, c, 2 * kTickMs);
  EXPECT_LT(moved(fresh.plan, "g"), 0) << fresh.plan.explanation("g");
}

// 10. A guest shrunk to its comfort band while idle dies when it then writes a few hundred MiB to
//     tmpfs faster than its balloon grows. Below the reserve without swap or stall the host does
//     not need that memory urgently: a guest that cannot rescue itself (no autodeflate, or one
//     that cannot deflate that far because the memory is in virtio-mem blocks, no swap it has
//     used) keeps a quarter of its maximum usable until the host is critical.
TEST(PolicyFaults, AGuestThatCannotRescueItselfKeepsBurstRoomUntilTheHostIsCritical) {
  auto c = base_config();
  c.host.reserve_bytes = 16 * GiB;  // deep below: every guest gives all it may
  c.classes[0].balloon.max_step = SizeOrRatio{8 * GiB};
  struct Case {
    const char* what;
    std::uint64_t available;  // of 64 GiB: 2 GiB is tight, 1 GiB is critical (2 % of RAM)
    bool autodeflate;
    bool has_swapped;
    std::uint64_t lowest;   // the shrink of an idle 8 GiB guest using 1 GiB stops here or above
    std::uint64_t highest;  // ... and here or below
    std::uint64_t virtio_mem = 0;  // of its 8 GiB, this much in a virtio-mem device
  };
  const std::vector<Case> cases = {
      {"tight host, guest without a rescue keeps 2 GiB free", 2 * GiB, false, false, 3 * GiB,
       3 * GiB + 8 * MiB},
      {"tight host, autodeflate: comfort band", 2 * GiB, true, false, GiB, GiB + 256 * MiB},
      {"tight host, guest that swaps: comfort band", 2 * GiB, false, true, GiB, GiB + 256 * MiB},
      {"critical host: free target even without a rescue", GiB, false, false, GiB, GiB + 256 * MiB},
      // Autodeflate gives back what the balloon holds, never unplugged virtio-mem blocks: with
      // 2 GiB of base memory it cannot reach 3 GiB by itself; with 4 GiB it can.
      {"tight host, autodeflate over 2 GiB of base memory and virtio-mem: keeps 2 GiB free",
       2 * GiB, true, false, 3 * GiB, 3 * GiB + 8 * MiB, 6 * GiB},
      {"tight host, autodeflate over 4 GiB of base memory and virtio-mem: comfort band", 2 * GiB,
       true, false, GiB, GiB + 256 * MiB, 4 * GiB},
  };
  for (const auto& k : cases) {
    auto s = host(k.available);
    s.vms = {guest("idle", 8 * GiB, 8 * GiB, 7 * GiB)};
    if (k.virtio_mem > 0) {
      s.vms[0].virtio_mem = {VirtioMemDevice{"virtiomem0", 0, 2 * MiB, k.virtio_mem, k.virtio_mem,
                                             k.virtio_mem, k.virtio_mem}};
    }
    s.vms[0].balloon_autodeflate = k.autodeflate;
    s.vms[0].guest.swap_out_bytes_total = k.has_swapped ? 64 * MiB : 0;
    const auto d = decide(s, {}, c, 0);
    const auto* change = change_for(d.plan, "idle");
    ASSERT_NE(change, nullptr) << k.what << ": " << d.plan.explanation("idle");
    EXPECT_GE(change->to_bytes, k.lowest) << k.what;
    EXPECT_LE(change->to_bytes, k.highest) << k.what;
  }
  // Where the rule holds a guest, its explanation says why.
  auto s = host(2 * GiB);
  s.vms = {guest("held", 3 * GiB, 8 * GiB, 2 * GiB)};
  const auto d = decide(s, {}, c, 0);
  EXPECT_EQ(change_for(d.plan, "held"), nullptr);
  EXPECT_NE(d.plan.explanation("held").find("keeps room for a burst"), std::string::npos)
      << d.plan.explanation("held");
}

}  // namespace
}  // namespace memtide::policy

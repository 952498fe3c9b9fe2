// The policy engine, rule by rule, then properties over random inputs.
#include <algorithm>
#include <random>

#include <gtest/gtest.h>

#include <memtide/policy/engine.hpp>

#include "policy_fixtures.hpp"

namespace memtide::policy {
namespace {

using namespace std::chrono_literals;

using namespace testing;

TEST(Decide, NothingToDoWhenHostAndGuestsAreFine) {
  auto s = host(20 * GiB);
  s.vms = {guest("web-1", 4 * GiB, 8 * GiB, 2 * GiB)};
  const auto d = decide(s, {}, base_config(), 0);
  EXPECT_TRUE(d.plan.balloons.empty());
  EXPECT_FALSE(d.plan.host_pressure);
  EXPECT_TRUE(d.plan.alerts.empty());
  EXPECT_EQ(d.plan.explanation("web-1"), "unchanged at 4 GiB: 50% usable, target 15%");
}

TEST(Decide, IdleHostDoesNotGrowGuestsToTheirMaximum) {
  auto s = host(50 * GiB);
  s.vms = {guest("web-1", 2 * GiB, 8 * GiB, 1 * GiB)};  // not in need, far below maximum
  EXPECT_TRUE(decide(s, {}, base_config(), 0).plan.balloons.empty());
  auto c = base_config();
  c.classes[0].balloon.grow_when_host_idle = true;  // unless the class asks for it
  const auto d = decide(s, {}, c, 0);
  ASSERT_EQ(d.plan.balloons.size(), 1u);
  EXPECT_EQ(d.plan.balloons[0].to_bytes, 2 * GiB + 512 * MiB);  // one max_step
}

TEST(Decide, GuestShortOfMemoryGrowsFromHostRoom) {
  auto s = host(20 * GiB);
  // 4 GiB guest with 400 MiB usable (short, not below half its target): in use 3696 MiB. It is
  // grown past its 15 % target to the comfort point, where 15 % * 1.25 = 18.75 % is usable:
  // 3696 / 0.8125 = 4548.9 MiB.
  s.vms = {guest("web-1", 4 * GiB, 8 * GiB, 400 * MiB)};
  auto config = base_config();
  config.classes[0].balloon.max_step = SizeOrRatio{4 * GiB};
  const auto d = decide(s, {}, config, 0);
  const auto* c = change_for(d.plan, "web-1");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->from_bytes, 4 * GiB);
  EXPECT_EQ(c->to_bytes, static_cast<std::uint64_t>(3696.0 * MiB / 0.8125));
  EXPECT_EQ(c->floor_bytes, GiB);
  // The guest's own reason states its share once.
  EXPECT_EQ(c->reason.find("guest short of memory: 10% usable, target 15%: grow "), 0u)
      << c->reason;
  EXPECT_EQ(c->reason.find("web-1 has"), std::string::npos) << c->reason;
}

// A balloon below its floor (the floor was raised by a reload or by new metadata) is raised to it
// even when nothing else would change it, and the command says why (it once had no reason).
TEST(Decide, ABalloonOutsideItsLimitsIsMovedInsideWithAReason) {
  auto s = host(20 * GiB);
  s.vms = {guest("low", 800 * MiB, 8 * GiB, 400 * MiB)};  // fine inside, below the 1 GiB floor
  const auto d = decide(s, {}, base_config(), 0);
  const auto* c = change_for(d.plan, "low");
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->to_bytes, GiB);
  EXPECT_EQ(c->cause, Cause::limits);
  EXPECT_EQ(c->reason.rfind("below its floor 1 GiB: raised to the floor; low has ", 0), 0u)
      << c->reason;
}

// Sizes no host could hold (a KiB figure that overflowed, a corrupted record) once went through
// a signed cast and came out as "grow 16.0 TiB", really a shrink to the floor. Such a VM is
// reported, never acted on.
TEST(Decide, ImpossibleSizesAreNotActedOn) {
  auto s = host(1 * GiB);  // host pressure: every managed guest would be a donor
  s.vms = {guest("huge", (1ULL << 63) + 4 * GiB, (1ULL << 63) + 8 * GiB, 0),
           guest("inverted", 8 * GiB, 4 * GiB, 0), guest("fine", 4 * GiB, 8 * GiB, 3 * GiB)};
  s.vms[1].invalid_sizes = std::nullopt;  // found by the policy itself, not only the collector
  const auto d = decide(s, {}, base_config(), 0);
  EXPECT_EQ(change_for(d.plan, "huge"), nullptr);
  EXPECT_EQ(change_for(d.plan, "inverted"), nullptr);
  ASSERT_NE(change_for(d.plan, "fine"), nullptr);
  EXPECT_NE(d.plan.explanation("huge").find("impossible sizes from libvirt: maximum"),
            std::string::npos)
      << d.plan.explanation("huge");
  EXPECT_NE(d.plan.explanation("inverted").find("is above the maximum"), std::string::npos)
      << d.plan.explanation("inverted");
  for (const auto& b : d.plan.balloons) {
    EXPECT_LE(b.to_bytes, 8 * GiB) << b.vm;
  }
}

// A balloon frees no host memory for a guest whose RAM the host holds anyway (hugepages,
// locked, a passed-through device, preallocation, launchSecurity): a pressed host takes nothing
// from it, even where an equal guest without pins gives to its floor, and one found below its
// maximum is let out to it (the host pays nothing for that).
TEST(Decide, GuestsWithPinnedMemoryAreNeverShrunk) {
  auto s = host(100 * MiB);  // far below the 2 GiB reserve
  s.vms = {self_rescuing(guest("plain", 6 * GiB, 8 * GiB, 5 * GiB)),
           self_rescuing(guest("vfio", 6 * GiB, 8 * GiB, 5 * GiB)),
           self_rescuing(guest("huge", 8 * GiB, 8 * GiB, 7 * GiB))};
  s.vms[1].memory_pins = {MemoryPin::hostdev};
  s.vms[2].memory_pins = {MemoryPin::hugepages, MemoryPin::locked};
  auto c = base_config();
  c.classes[0].balloon.max_step = SizeOrRatio{8 * GiB};
  const auto d = decide(s, {}, c, 0);
  ASSERT_NE(change_for(d.plan, "plain"), nullptr);
  EXPECT_LT(change_for(d.plan, "plain")->to_bytes, 6 * GiB);
  const auto* vfio = change_for(d.plan, "vfio");
  ASSERT_NE(vfio, nullptr);
  EXPECT_EQ(vfio->to_bytes, 8 * GiB);
  EXPECT_EQ(vfio->cause, Cause::limits);
  EXPECT_EQ(vfio->reason.rfind("the host holds all of its memory whatever its balloon (a "
                               "passed-through device): let out to its maximum",
                               0),
            0u)
      << vfio->reason;
  EXPECT_EQ(change_for(d.plan, "huge"), nullptr);
  EXPECT_NE(d.plan.explanation("huge").find("never shrunk: the host holds all of its memory "
                                            "whatever its balloon (hugepage backing and locked "
                                            "memory)"),
            std::string::npos)
      << d.plan.explanation("huge");
}

// Another manager on the host keeps what it controls: no balloon commands beside MOM, no KSM
// writes beside ksmtuned, each said in the explanation, the KSM reason and an alert; with
// daemon.coexist force memtide acts anyway.
TEST(Decide, OtherMemoryManagersAreLeftWhatTheyControl) {
  auto s = host(1 * GiB);  // pressed: the idle guest would give, the needy one grow
  s.vms = {self_rescuing(guest("needy", 4 * GiB, 8 * GiB, 100 * MiB)),
           self_rescuing(guest("idle", 6 * GiB, 8 * GiB, 5 * GiB))};
  KsmSample ksm;
  ksm.run = 0;
  s.ksm = ksm;
  auto c = base_config();
  c.ksm.mode = config::KsmMode::on;
  const auto alone = decide(s, {}, c, 0);
  ASSERT_EQ(alone.plan.balloons.size(), 2u);
  ASSERT_TRUE(alone.plan.ksm && alone.plan.ksm->settings);

  s.other_managers = {{"momd", 812, true, true}};
  const auto beside_mom = decide(s, {}, c, 0);
  EXPECT_TRUE(beside_mom.plan.balloons.empty());
  EXPECT_EQ(beside_mom.plan.explanation("idle"),
            "not managed: momd (pid 812) resizes balloons on this host: memtide leaves them to it "
            "(daemon.coexist: force overrides)");
  ASSERT_TRUE(beside_mom.plan.ksm.has_value());
  EXPECT_FALSE(beside_mom.plan.ksm->settings.has_value());
  EXPECT_EQ(beside_mom.plan.ksm->reason.rfind("momd (pid 812) tunes KSM on this host", 0), 0u);
  const auto alert = std::find_if(beside_mom.plan.alerts.begin(), beside_mom.plan.alerts.end(),
                                  [](const Alert& a) { return a.name == "other-memory-manager"; });
  ASSERT_NE(alert, beside_mom.plan.alerts.end());
  EXPECT_EQ(
      alert->summary,
      "momd (pid 812) resizes balloons and tunes KSM on this host: memtide leaves both to it");
  // Guests in need raise no guest alerts for a policy that is not memtide's to run.
  for (const auto& a : beside_mom.plan.alerts) {
    EXPECT_EQ(a.subject, "") << a.name;
  }

  s.other_managers = {{"ksmtuned", 40, false, true}};
  const auto beside_ksmtuned = decide(s, {}, c, 0);
  EXPECT_EQ(beside_ksmtuned.plan.balloons, alone.plan.balloons);
  EXPECT_FALSE(beside_ksmtuned.plan.ksm->settings.has_value());

  c.daemon.coexist = config::Coexist::force;
  s.other_managers = {{"momd", 812, true, true}, {"ksmtuned", 40, false, true}};
  const auto forced = decide(s, {}, c, 0);
  EXPECT_EQ(forced.plan.balloons, alone.plan.balloons);
  EXPECT_EQ(forced.plan.ksm, alone.plan.ksm);
  EXPECT_EQ(forced.plan.alerts, alone.plan.alerts);
}

// Headroom for a scheduler: what is above the reserve, and what the policy could reclaim
// without pressing anyone, which is exactly what a tight host takes when it needs all of it.
TEST(Decide, HeadroomIsWhatATightHostWouldTake) {
  auto c = base_config();
  c.classes[0].balloon.max_step = SizeOrRatio{16 * GiB};
  c.host.reserve_bytes = 32 * GiB;
  auto s = host(40 * GiB);
  s.vms = {self_rescuing(guest("idle", 8 * GiB, 8 * GiB, 6 * GiB)),
           guest("plain", 8 * GiB, 8 * GiB, 6 * GiB),  // keeps burst room: reclaims less
           guest("pinned", 8 * GiB, 8 * GiB, 6 * GiB)};
  s.vms[2].memory_pins = {MemoryPin::hostdev};
  const auto calm = decide(s, {}, c, 0);
  EXPECT_EQ(calm.plan.headroom_above_reserve_bytes, 8 * GiB);
  ASSERT_GT(calm.plan.reclaimable_bytes, 0u);
  EXPECT_TRUE(calm.plan.balloons.empty());

  s.host.meminfo.available_bytes = 2 * GiB;  // tight, short of far more than there is spare
  const auto tight = decide(s, {}, c, 0);
  ASSERT_EQ(tight.plan.host_level, HostLevel::tight);
  EXPECT_EQ(tight.plan.headroom_above_reserve_bytes, 0u);
  std::uint64_t taken = 0;
  for (const auto& b : tight.plan.balloons) {
    EXPECT_NE(b.vm, "pinned");
    taken += b.from_bytes - b.to_bytes;
  }
  EXPECT_EQ(taken, calm.plan.reclaimable_bytes);
  EXPECT_EQ(tight.plan.reclaimable_bytes, calm.plan.reclaimable_bytes);
}

TEST(Decide, GrowthIsLimitedByMaxStepAndMaximum) {
  auto s = host(20 * GiB);
  s.vms = {guest("big", 4 * GiB, 16 * GiB, 0), guest("capped", 7900 * MiB, 8 * GiB, 0)};
  const auto d = decide(s, {}, base_config(), 0);
  EXPECT_EQ(change_for(d.plan, "big")->to_bytes, 4 * GiB + 512 * MiB);
  EXPECT_EQ(change_for(d.plan, "capped")->to_bytes, 8 * GiB);
}

TEST(Decide, UnderPressureGuestsInNeedAreFedByGuestsWithSpare) {
  auto s = host(1 * GiB);  // below the 2 GiB reserve
  s.vms = {guest("needy", 4 * GiB, 8 * GiB, 100 * MiB), guest("idle", 6 * GiB, 8 * GiB, 5 * GiB)};
  const auto d = decide(s, {}, base_config(), 0);
  EXPECT_TRUE(d.plan.host_pressure);
  const auto* needy = change_for(d.plan, "needy");
  const auto* idle = change_for(d.plan, "idle");
  ASSERT_NE(needy, nullptr);
  ASSERT_NE(idle, nullptr);
  EXPECT_GT(needy->to_bytes, needy->from_bytes);
  EXPECT_LT(idle->to_bytes, idle->from_bytes);
  // The idle guest pays for the needy one and for as much of the deficit as one step allows.
  EXPECT_EQ(idle->from_bytes - idle->to_bytes, 512 * MiB);
  EXPECT_NE(idle->reason.find("host MemAvailable 1 GiB < reserve 2 GiB"), std::string::npos)
      << idle->reason;
  EXPECT_EQ(needy->cause, Cause::guest_need);
  // Its step went to the needy guest first (the reason names the host pressure too).
  EXPECT_EQ(idle->cause, Cause::funding);
}

TEST(Decide, ComfortBandStopsResizingOnSmallDrifts) {
  // Grown to its comfort point (18.75 % usable), a guest is left alone while usable drifts
  // between 15 % and 18.75 %: not grown, and not taken from to feed another guest.
  auto c = base_config();
  c.classes[0].balloon.max_step = SizeOrRatio{8 * GiB};
  auto s = host(20 * GiB);
  const std::uint64_t current = 4 * GiB;
  // 16 % usable: above the target, below the comfort point.
  s.vms = {guest("drifting", current, 8 * GiB, current * 16 / 100),
           guest("hungry", 2 * GiB, 8 * GiB, 20 * MiB)};
  s.host.meminfo.available_bytes = 2 * GiB;  // no host room: "hungry" must be fed by guests
  const auto d = decide(s, {}, c, 0);
  EXPECT_EQ(change_for(d.plan, "drifting"), nullptr) << d.plan.explanation("drifting");
  // 14 % usable: below the target, grown back to the comfort point.
  s.vms = {guest("drifting", current, 8 * GiB, current * 14 / 100)};
  s.host.meminfo.available_bytes = 20 * GiB;
  const auto grown = decide(s, {}, c, 0);
  const auto* g = change_for(grown.plan, "drifting");
  ASSERT_NE(g, nullptr);
  const double in_use = static_cast<double>(current - current * 14 / 100);
  EXPECT_EQ(g->to_bytes, static_cast<std::uint64_t>(in_use / (1 - 0.15 * kComfortFactor)));
  // 30 % usable and a guest in need while the host has no room: the donor gives down to its
  // comfort point, not to its 15 % target.
  s.vms = {self_rescuing(guest("donor", current, 8 * GiB, current * 30 / 100)),
           guest("hungry", 4 * GiB, 8 * GiB, 20 * MiB)};  // wants 920 MiB, more than spare
  s.host.meminfo.available_bytes = 2 * GiB;
  const auto fed = decide(s, {}, c, 0);
  const auto* donor = change_for(fed.plan, "donor");
  ASSERT_NE(donor, nullptr);
  EXPECT_EQ(donor->cause, Cause::funding);
  const double donor_in_use = static_cast<double>(current - current * 30 / 100);
  EXPECT_EQ(donor->to_bytes,
            static_cast<std::uint64_t>(donor_in_use / (1 - 0.15 * kComfortFactor)));
}

// MemAvailable falling 50 MiB/s for six 10 s ticks, to `end` at the last; a 300 s horizon and an
// idle 8 GiB guest whose balloon follows every command at once. The last tick's decision.
Decision falling_host(std::uint64_t end) {
  auto c = base_config();
  c.host.swap_forecast.horizon = 300s;
  c.classes[0].balloon.max_step = SizeOrRatio{8 * GiB};
  PolicyState state;
  Decision d;
  std::uint64_t size = 8 * GiB;
  for (int t = 0; t <= 6; ++t) {
    auto s = host(end + (6 - t) * 500 * MiB);
    s.vms = {guest("idle", size, 8 * GiB, size - 2 * GiB)};
    d = decide(s, state, c, t * 10'000);
    state = d.state;
    if (t < 6 && !d.plan.balloons.empty()) {
      size = d.plan.balloons[0].to_bytes;
    }
  }
  return d;
}

TEST(Decide, HeadingForSwapReclaimsTheShortfallPacedByTimeLeft) {
  // No pressure yet (MemAvailable 3.5 GiB, above the 2 GiB reserve but within twice it; no PSI,
  // no swapping) but falling 50 MiB/s: 3.5 GiB - 640 MiB (1 % of 64 GiB) lasts 59 s, inside the
  // 300 s horizon. At the horizon MemAvailable would be 3.5 GiB - 15000 MiB, 13464 MiB short of
  // the reserve; one 10 s tick's share of the 59 s left is taken now.
  const Decision d = falling_host(3584 * MiB);
  ASSERT_TRUE(d.plan.host_heading);
  EXPECT_FALSE(d.plan.host_pressure);
  const double left_s = (3.5 * 1024 - 0.01 * 64 * 1024) / 50;
  const double shortfall = 2.0 * 1024 - (3.5 * 1024 - 50.0 * 300);
  const auto* idle = change_for(d.plan, "idle");
  ASSERT_NE(idle, nullptr);
  EXPECT_NEAR(static_cast<double>(idle->from_bytes - idle->to_bytes) / MiB, shortfall * 10 / left_s,
              1.0);
  EXPECT_NE(idle->reason.find("swap predicted in"), std::string::npos) << idle->reason;
  EXPECT_EQ(idle->cause, Cause::swap_forecast);
  EXPECT_STREQ(to_string(idle->cause), "swap-forecast");
}

// The same fall far above the reserve (8 GiB available, four times it): the forecast warns (the
// alert fires) but takes nothing from the guest; a process starting or a guest booting looks the
// same, and the reserve rule acts the moment MemAvailable crosses the reserve.
TEST(Decide, AForecastFarAboveTheReserveWarnsButShrinksNothing) {
  const Decision d = falling_host(8 * GiB);
  ASSERT_TRUE(d.plan.forecast.seconds_to_swap.has_value());
  EXPECT_FALSE(d.plan.host_heading);
  EXPECT_EQ(d.plan.host_level, HostLevel::ok);
  EXPECT_EQ(change_for(d.plan, "idle"), nullptr) << d.plan.explanation("idle");
  bool warned = false;
  for (const auto& a : d.plan.alerts) {
    warned = warned || a.name == "host-swap-forecast";
  }
  EXPECT_TRUE(warned);
}

// A forecast that proves wrong is undone at once: the guest it shrank is given memory back as
// soon as the host is ok again, without the five-minute quiet period real pressure earns.
TEST(Decide, AForecastThatProvesWrongIsUndoneWithoutTheQuietPeriod) {
  auto c = base_config();
  c.host.swap_forecast.horizon = 300s;
  c.classes[0].balloon.max_step = SizeOrRatio{8 * GiB};
  c.classes[0].balloon.hysteresis = 10s;
  c.classes[0].balloon.grow_when_host_idle = true;
  PolicyState state;
  std::uint64_t size = 8 * GiB;
  std::optional<std::int64_t> shrunk_at;
  std::optional<std::int64_t> grown_at;
  for (int t = 0; t <= 30 && !grown_at; ++t) {
    // Falling 50 MiB/s to 3.5 GiB at t = 6, then flat at 6 GiB (the process that ate it ended).
    const std::uint64_t available = t <= 6 ? 3584 * MiB + (6 - t) * 500 * MiB : 6 * GiB;
    auto s = host(available);
    s.vms = {guest("idle", size, 8 * GiB, size - 2 * GiB)};
    const Decision d = decide(s, state, c, t * 10'000);
    state = d.state;
    for (const auto& b : d.plan.balloons) {
      if (b.to_bytes < size && !shrunk_at) {
        ASSERT_EQ(b.cause, Cause::swap_forecast) << b.reason;
        shrunk_at = t * 10'000;
      } else if (b.to_bytes > size && shrunk_at) {
        grown_at = t * 10'000;
      }
      size = b.to_bytes;
    }
  }
  ASSERT_TRUE(shrunk_at.has_value());
  ASSERT_TRUE(grown_at.has_value()) << "never given back";
  EXPECT_LT(*grown_at - *shrunk_at, kGiveBackQuietMs);
}

TEST(Decide, ReclaimTakesFromTheMostSparePerShareFirst) {
  auto s = host(GiB + 900 * MiB);  // 124 MiB below the reserve
  auto a = self_rescuing(guest("a", 4 * GiB, 8 * GiB, 2 * GiB));
  auto b = self_rescuing(guest("b", 4 * GiB, 8 * GiB, 2 * GiB));
  a.metadata.shares = 4000;  // same spare, four times the shares: keeps its memory
  s.vms = {a, b};
  const auto d = decide(s, {}, base_config(), 0);
  EXPECT_EQ(change_for(d.plan, "a"), nullptr);
  const auto* cb = change_for(d.plan, "b");
  ASSERT_NE(cb, nullptr);
  EXPECT_EQ(cb->from_bytes - cb->to_bytes, 124 * MiB);
}

// Free page reporting: the guest's free pages are the host's already. Shrinking it frees only
// resident memory, so the host's deficit is taken from the guest whose shrink frees it, and a
// guest with reporting on is shrunk past its unresident part to free what the host needs.
TEST(Decide, FreePageReportingCountsOnlyResidentMemoryAsFreed) {
  auto s = host(GiB + 900 * MiB);  // 124 MiB below the reserve
  auto reporting = self_rescuing(guest("reporting", 4 * GiB, 8 * GiB, 3 * GiB));
  reporting.balloon_free_page_reporting = true;
  reporting.process = QemuProcess{4242, 2 * GiB, 0, std::nullopt};  // 2 GiB not resident
  auto c = base_config();
  c.classes[0].balloon.max_step = SizeOrRatio{8 * GiB};
  s.vms = {reporting};
  auto d = decide(s, {}, c, 0);
  const auto* change = change_for(d.plan, "reporting");
  ASSERT_NE(change, nullptr);
  EXPECT_EQ(change->from_bytes - change->to_bytes, 2 * GiB + 124 * MiB);  // 124 MiB of it freed
  EXPECT_NE(d.plan.explanation("reporting")
                .find("free page reporting: 2 GiB of its memory is free pages the host has back "
                      "already"),
            std::string::npos)
      << d.plan.explanation("reporting");

  // The same guest without reporting: its free memory is resident, a 124 MiB shrink frees it.
  auto plain = reporting;
  plain.balloon_free_page_reporting = false;
  s.vms = {plain};
  d = decide(s, {}, c, 0);
  change = change_for(d.plan, "reporting");
  ASSERT_NE(change, nullptr);
  EXPECT_EQ(change->from_bytes - change->to_bytes, 124 * MiB);

  // Beside a guest whose spare is resident, the reporting guest (more spare by its own figures,
  // less host memory to free) keeps its memory.
  auto resident = self_rescuing(guest("resident", 4 * GiB, 8 * GiB, 2 * GiB));
  resident.process = QemuProcess{4243, 4 * GiB, 0, std::nullopt};
  s.vms = {reporting, resident};
  d = decide(s, {}, c, 0);
  EXPECT_EQ(change_for(d.plan, "reporting"), nullptr);
  ASSERT_NE(change_for(d.plan, "resident"), nullptr);
  EXPECT_EQ(change_for(d.plan, "resident")->from_bytes - change_for(d.plan, "resident")->to_bytes,
            124 * MiB);
}

TEST(Decide, SqueezedTowardButNeverBelowTheFloor) {
  auto s = host(100 * MiB);  // deep below the reserve, nobody has spare
  auto v = guest("tight", 1200 * MiB, 8 * GiB, 100 * MiB);
  s.vms = {v};
  auto c = base_config();
  c.classes[0].balloon.max_step = SizeOrRatio{4 * GiB};
  const auto d = decide(s, {}, c, 0);
  // In need itself, so it is not squeezed; and the floor (1 GiB) holds in any case.
  for (const auto& b : d.plan.balloons) {
    EXPECT_GE(b.to_bytes, GiB);
  }
  auto spare_free = guest("loose", 1100 * MiB, 8 * GiB, 600 * MiB);  // spare to 1 GiB floor
  s.vms = {spare_free};
  const auto d2 = decide(s, {}, c, 0);
  ASSERT_EQ(d2.plan.balloons.size(), 1u);
  EXPECT_EQ(d2.plan.balloons[0].to_bytes, GiB);
}

// A critical host squeezes a guest that swaps below what it uses: its balloon makes it page
// out its cold memory. A virtio-mem unplug cannot: memory the guest uses above its balloon's
// ceiling is never asked for.
TEST(Decide, ASqueezeNeverAsksVirtioMemForWhatTheGuestUses) {
  auto s = host(100 * MiB);  // critical, 1.9 GiB below the reserve
  auto c = base_config();
  c.classes[0].balloon.max_step = SizeOrRatio{8 * GiB};
  auto swapper = guest("swapper", 3 * GiB, 8 * GiB, GiB);  // uses 2 GiB
  swapper.guest.swap_out_bytes_total = 64 * MiB;
  s.vms = {swapper};
  auto d = decide(s, {}, c, 0);
  ASSERT_NE(change_for(d.plan, "swapper"), nullptr);
  EXPECT_LT(change_for(d.plan, "swapper")->to_bytes, 2 * GiB);
  // The same guest with 1 GiB of base memory and a 7 GiB virtio-mem device, 2 GiB plugged.
  swapper.virtio_mem = {
      VirtioMemDevice{"virtiomem0", 0, 2 * MiB, 7 * GiB, 2 * GiB, 2 * GiB, 2 * GiB}};
  s.vms = {swapper};
  d = decide(s, {}, c, 0);
  ASSERT_NE(change_for(d.plan, "swapper"), nullptr);
  EXPECT_GE(change_for(d.plan, "swapper")->to_bytes, 2 * GiB);
  EXPECT_LT(change_for(d.plan, "swapper")->to_bytes, 3 * GiB);  // its spare is still taken
}

TEST(Decide, NoSqueezeWhileSpareCoversTheDeficit) {
  // 300 MiB below the reserve; "idle" has far more spare than that but gives one 64 MiB step per
  // tick. "busy" (little usable, no spare) must not be squeezed meanwhile.
  auto c = base_config();
  c.classes[0].balloon.max_step = SizeOrRatio{64 * MiB};
  auto s = host(2 * GiB - 300 * MiB);
  // "busy" keeps 17 % usable: not in need, but inside its comfort band, so nothing spare.
  s.vms = {guest("busy", 2 * GiB, 4 * GiB, 350 * MiB), guest("idle", 4 * GiB, 8 * GiB, 3 * GiB)};
  const auto d = decide(s, {}, c, 0);
  const auto* busy = change_for(d.plan, "busy");
  EXPECT_TRUE(busy == nullptr || busy->to_bytes > busy->from_bytes);  // fed, never squeezed
  ASSERT_NE(change_for(d.plan, "idle"), nullptr);
  // A critical host (MemAvailable at the kernel's watermarks) with no spare anywhere: then it
  // is squeezed toward what it uses.
  auto hard = host(GiB / 4);
  hard.vms = {guest("busy", 2 * GiB, 4 * GiB, 350 * MiB)};
  const auto squeezed = decide(hard, {}, c, 0);
  EXPECT_EQ(squeezed.plan.host_level, HostLevel::critical);
  ASSERT_NE(change_for(squeezed.plan, "busy"), nullptr);
  EXPECT_EQ(change_for(squeezed.plan, "busy")->cause, Cause::squeeze);
  EXPECT_NE(change_for(squeezed.plan, "busy")->reason.find("down toward what it uses"),
            std::string::npos);
}

TEST(Decide, UnreachedTargetIsNotResentEveryTick) {
  auto c = base_config();
  c.classes[0].balloon.max_step = SizeOrRatio{64 * MiB};
  auto s = host(GiB);
  s.vms = {guest("idle", 4 * GiB, 8 * GiB, 3 * GiB)};
  auto first = decide(s, {}, c, 0);
  ASSERT_EQ(first.plan.balloons.size(), 1u);
  // The guest did not move (the balloon driver could not inflate): same target, not resent.
  auto second = decide(s, first.state, c, 2000);
  EXPECT_TRUE(second.plan.balloons.empty());
  EXPECT_NE(second.plan.explanation("idle").find("waiting: asked for 3.9 GiB"), std::string::npos)
      << second.plan.explanation("idle");
  // After the hysteresis it is tried again.
  auto later = decide(s, second.state, c, 61'000);
  EXPECT_EQ(later.plan.balloons.size(), 1u);
}

TEST(Decide, UnsentCommandIsAskedForAgainNextTick) {
  auto s = host(20 * GiB);
  s.vms = {guest("hungry", 4 * GiB, 8 * GiB, 100 * MiB)};
  const auto first = decide(s, {}, base_config(), 0);
  ASSERT_EQ(first.plan.balloons.size(), 1u);
  // Sent but the balloon has not moved yet: the same target is not sent again within 10 s.
  EXPECT_TRUE(decide(s, first.state, base_config(), 5'000).plan.balloons.empty());
  // Not sent (actions paused): asked for again at once.
  auto state = first.state;
  unsend(state, first.plan.balloons[0]);
  const auto again = decide(s, state, base_config(), 5'000);
  ASSERT_EQ(again.plan.balloons.size(), 1u);
  EXPECT_EQ(again.plan.balloons[0].to_bytes, first.plan.balloons[0].to_bytes);
  EXPECT_EQ(state.vms.at("uuid-hungry").last_target_bytes, std::nullopt);
  // An unsent shrink leaves no shrink behind either: no re-read measure starts from it.
  auto tight = host(GiB);
  auto idle = self_rescuing(guest("idle", 4 * GiB, 8 * GiB, 3 * GiB));
  idle.guest.major_faults_total = 100;
  idle.disk_read_bytes_total = GiB;
  tight.vms = {idle};
  const auto shrink = decide(tight, {}, base_config(), 0);
  ASSERT_EQ(shrink.plan.balloons.size(), 1u);
  ASSERT_LT(shrink.plan.balloons[0].to_bytes, 4 * GiB);
  auto kept = shrink.state;
  ASSERT_TRUE(kept.vms.at("uuid-idle").last_shrink_ms.has_value());
  ASSERT_EQ(kept.vms.at("uuid-idle").size_before_shrink_bytes, 4 * GiB);
  unsend(kept, shrink.plan.balloons[0]);
  const auto& vm = kept.vms.at("uuid-idle");
  EXPECT_EQ(vm.last_direction, 0);
  EXPECT_EQ(vm.last_shrink_ms, std::nullopt);
  EXPECT_EQ(vm.faults_before_shrink_per_second, -1);
  EXPECT_EQ(vm.reads_before_shrink_per_second, -1);
  EXPECT_EQ(vm.size_before_shrink_bytes, std::nullopt);
}

TEST(Decide, ABalloonStillMovingIsNotSentATargetShortOfTheLastOne) {
  auto c = base_config();
  auto s = host(20 * GiB);
  s.vms = {guest("grower", 4 * GiB, 8 * GiB, 100 * MiB)};
  const auto first = decide(s, {}, c, 0);
  ASSERT_EQ(first.plan.balloons.size(), 1u);
  const auto sent = first.plan.balloons[0].to_bytes;  // 4.5 GiB (one 512 MiB step)
  // 20 s later libvirt reports the balloon halfway there (4.25 GiB) and the guest still short
  // (630 MiB usable, 14.5 %); its comfort size from these figures, 3722 / 0.8125 = 4581 MiB, is
  // short of the 4608 MiB in flight: that must not be sent.
  s.vms = {guest("grower", 4 * GiB + 256 * MiB, 8 * GiB, 630 * MiB)};
  const auto second = decide(s, first.state, c, 20'000);
  for (const auto& b : second.plan.balloons) {
    EXPECT_GE(b.to_bytes, sent) << b.reason;
  }
  // Likewise for a shrink on its way down.
  auto p = host(GiB);  // under pressure: reclaim
  p.vms = {guest("donor", 6 * GiB, 8 * GiB, 5 * GiB)};
  const auto down = decide(p, {}, c, 0);
  ASSERT_EQ(down.plan.balloons.size(), 1u);
  const auto shrunk_to = down.plan.balloons[0].to_bytes;
  p.vms = {guest("donor", 6 * GiB - 100 * MiB, 8 * GiB, 5 * GiB - 100 * MiB)};
  for (const auto& b : decide(p, down.state, c, 20'000).plan.balloons) {
    EXPECT_LE(b.to_bytes, shrunk_to) << b.reason;
  }
}

// A command is in flight only while the balloon lies between where it started and its target.
// memtide shrank the guest 3.25 -> 2.5 GiB; someone (virsh setmem, the safety net after a crash)
// then gave it 4 GiB again: the next shrink is one step from 4 GiB, not straight to 2.5 GiB.
TEST(Decide, AShrinkTheBalloonLeftIsForgottenNotStretchedPastMaxStep) {
  auto c = base_config();
  c.classes[0].balloon.max_step = SizeOrRatio{800 * MiB};
  auto p = host(GiB);  // under pressure: reclaim
  p.vms = {guest("donor", 4 * GiB, 8 * GiB, 3 * GiB)};
  PolicyState state;
  auto& memory = state.vms["uuid-donor"];
  memory.last_direction = -1;
  memory.last_change_ms = 0;
  memory.last_target_bytes = 2560 * MiB;
  memory.last_from_bytes = 3328 * MiB;
  for (const bool start_known : {true, false}) {
    if (!start_known) {
      memory.last_from_bytes.reset();  // a state file written before starts were recorded
    }
    const auto d = decide(p, state, c, 600'000);
    const auto* shrink = change_for(d.plan, "donor");
    ASSERT_NE(shrink, nullptr) << d.plan.explanation("donor");
    EXPECT_EQ(shrink->to_bytes, 4 * GiB - 800 * MiB) << shrink->reason;
    EXPECT_EQ(d.state.vms.at("uuid-donor").last_from_bytes, 4 * GiB);
  }
  // The same without a restart: shrunk 4 -> 3.25 GiB, reached, then grown by someone to 5 GiB.
  p.vms = {guest("donor", 4 * GiB, 8 * GiB, 3 * GiB)};
  const auto first = decide(p, {}, c, 0);
  ASSERT_EQ(first.plan.balloons.size(), 1u);
  p.vms = {guest("donor", 5 * GiB, 8 * GiB, 4 * GiB)};
  const auto d = decide(p, first.state, c, 600'000);
  const auto* shrink = change_for(d.plan, "donor");
  ASSERT_NE(shrink, nullptr) << d.plan.explanation("donor");
  EXPECT_EQ(shrink->to_bytes, 5 * GiB - 800 * MiB) << shrink->reason;
}

// A command still in flight when a reload lowered max_step or raised the floor does not carry
// the next command past either.
TEST(Decide, ACommandInFlightKeepsToTheCurrentStepAndFloor) {
  auto c = base_config();
  c.classes[0].balloon.max_step = SizeOrRatio{256 * MiB};
  c.classes[0].balloon.floor = SizeOrRatio{3 * GiB + 512 * MiB};
  auto p = host(GiB);
  p.vms = {guest("donor", 4 * GiB, 8 * GiB, 3 * GiB)};
  PolicyState state;
  auto& memory = state.vms["uuid-donor"];
  memory.last_direction = -1;
  memory.last_target_bytes = 2 * GiB;  // sent before the reload, from 5 GiB
  memory.last_from_bytes = 5 * GiB;
  const auto d = decide(p, state, c, 600'000);
  const auto* shrink = change_for(d.plan, "donor");
  ASSERT_NE(shrink, nullptr) << d.plan.explanation("donor");
  EXPECT_EQ(shrink->to_bytes, 4 * GiB - 256 * MiB) << shrink->reason;
}

// Times from guests and state files at the ends of their range: no sum overflows (UBSan checks
// this in the sanitizer build) and no guest is taken as settling for it.
TEST(Decide, ExtremeReportTimesOverflowNothing) {
  for (const std::int64_t extreme : {INT64_MAX, INT64_MIN, std::int64_t{0}}) {
    auto s = host(GiB);
    s.collected_at_unix_ms = 1'780'000'000'000;
    auto g = guest("donor", 6 * GiB, 8 * GiB, 5 * GiB);
    g.guest.last_update_unix_s = extreme;
    s.vms = {g};
    PolicyState state;
    auto& memory = state.vms["uuid-donor"];
    memory.last_direction = -1;
    memory.last_change_unix_ms = extreme;
    memory.faults_report_unix_s = extreme == INT64_MAX ? INT64_MIN : INT64_MAX;
    memory.in_use_report_unix_s = memory.faults_report_unix_s;
    memory.major_faults_total = 0;
    memory.in_use_bytes = GiB;
    const auto d = decide(s, state, base_config(), 600'000);
    EXPECT_NE(change_for(d.plan, "donor"), nullptr) << d.plan.explanation("donor");
  }
}

TEST(Decide, DeadbandSkipsSmallChanges) {
  auto s = host(2000 * MiB);  // 48 MiB below the 2 GiB reserve
  s.vms = {self_rescuing(guest("a", 4 * GiB, 8 * GiB, 2 * GiB))};
  auto c = base_config();
  c.classes[0].balloon.deadband_bytes = 64 * MiB;
  const auto d = decide(s, {}, c, 0);
  EXPECT_TRUE(d.plan.balloons.empty());
  EXPECT_NE(d.plan.explanation("a").find("within the deadband of 64 MiB"), std::string::npos)
      << d.plan.explanation("a");
}

TEST(Decide, HysteresisStopsQuickReversals) {
  auto c = base_config();
  auto s = host(20 * GiB);
  s.vms = {guest("a", 4 * GiB, 8 * GiB, 100 * MiB)};
  const auto grew = decide(s, {}, c, 0);
  ASSERT_EQ(grew.plan.balloons.size(), 1u);
  // 10 s later the host is below its reserve and "a" now has spare: no shrink yet.
  auto s2 = host(GiB);
  s2.vms = {guest("a", grew.plan.balloons[0].to_bytes, 8 * GiB, 3 * GiB)};
  const auto held = decide(s2, grew.state, c, 10'000);
  EXPECT_TRUE(held.plan.balloons.empty());
  EXPECT_NE(held.plan.explanation("a").find("hysteresis"), std::string::npos);
  // After the hysteresis it may shrink.
  const auto later = decide(s2, grew.state, c, 61'000);
  ASSERT_EQ(later.plan.balloons.size(), 1u);
  EXPECT_LT(later.plan.balloons[0].to_bytes, later.plan.balloons[0].from_bytes);
}

TEST(Decide, NeverActsBlindOrOnUnmanagedVms) {
  auto s = host(GiB);
  auto stale = guest("stale", 4 * GiB, 8 * GiB, 3 * GiB);
  stale.stats_status = GuestStatsStatus::stale;
  auto off = guest("off", 4 * GiB, 8 * GiB, 3 * GiB);
  off.metadata.balloon_enabled = false;
  auto paused = guest("paused", 4 * GiB, 8 * GiB, 3 * GiB);
  paused.state = VmState::paused;
  s.vms = {stale, off, paused};
  const auto d = decide(s, {}, base_config(), 0);
  EXPECT_TRUE(d.plan.balloons.empty());
  EXPECT_NE(d.plan.explanation("stale").find("statistics are stale"), std::string::npos);
  EXPECT_NE(d.plan.explanation("stale").find("does not shrink a guest blind"), std::string::npos);
  EXPECT_NE(d.plan.explanation("off").find("not managed"), std::string::npos);
  EXPECT_NE(d.plan.explanation("paused").find("paused"), std::string::npos);
}

TEST(Decide, StaleGuestIsOnlyEverGrownAndOnlyFromHostRoom) {
  auto c = base_config();
  auto stale = guest("starving", 2 * GiB, 8 * GiB, 3 * GiB);
  stale.stats_status = GuestStatsStatus::stale;
  auto roomy = host(20 * GiB);
  roomy.vms = {stale};
  const auto d = decide(roomy, {}, c, 0);
  ASSERT_EQ(d.plan.balloons.size(), 1u);
  EXPECT_EQ(d.plan.balloons[0].to_bytes, 2 * GiB + 512 * MiB);
  EXPECT_NE(d.plan.balloons[0].reason.find("statistics stale"), std::string::npos);
  EXPECT_EQ(d.plan.balloons[0].cause, Cause::stale);
  // Under pressure it is left alone: neither grown nor (blind) shrunk.
  auto tight = host(GiB);
  tight.vms = {stale, guest("idle", 4 * GiB, 8 * GiB, 3 * GiB)};
  const auto p = decide(tight, {}, c, 0);
  EXPECT_EQ(change_for(p.plan, "starving"), nullptr);
  EXPECT_NE(p.plan.explanation("starving").find("does not shrink a guest blind"),
            std::string::npos);
}

TEST(Decide, GuestSwappingGetsAFullStep) {
  auto c = base_config();
  auto s = host(20 * GiB);
  auto v = guest("a", 4 * GiB, 8 * GiB, 2 * GiB);  // plenty usable, but swapping in
  s.vms = {v};
  const auto first = decide(s, {}, c, 0);
  EXPECT_TRUE(first.plan.balloons.empty());
  v.guest.swap_in_bytes_total = 64 * MiB;
  s.vms = {v};
  const auto second = decide(s, first.state, c, 10'000);
  ASSERT_EQ(second.plan.balloons.size(), 1u);
  EXPECT_EQ(second.plan.balloons[0].to_bytes, 4 * GiB + 512 * MiB);
  EXPECT_NE(second.plan.balloons[0].reason.find("guest is swapping"), std::string::npos);
}

TEST(Decide, MajorFaultsNearTheTargetCountAsNeed) {
  auto c = base_config();
  auto s = host(20 * GiB);
  // 17 % usable: above the 15 % target but inside the comfort band (18.75 %).
  auto v = guest("reader", 4 * GiB, 8 * GiB, 4 * GiB * 17 / 100);
  v.guest.major_faults_total = 1000;
  s.vms = {v};
  const auto first = decide(s, {}, c, 0);
  EXPECT_TRUE(first.plan.balloons.empty());
  // 500 faults/s over the next 10 s: grown, with the fault rate as the reason.
  v.guest.major_faults_total = 6000;
  s.vms = {v};
  const auto second = decide(s, first.state, c, 10'000);
  ASSERT_EQ(second.plan.balloons.size(), 1u) << second.plan.explanation("reader");
  EXPECT_GT(second.plan.balloons[0].to_bytes, 4 * GiB);
  EXPECT_NE(second.plan.balloons[0].reason.find("guest is faulting pages in (500 major faults/s)"),
            std::string::npos)
      << second.plan.balloons[0].reason;
  // 50 faults/s is normal disk activity: nothing.
  v.guest.major_faults_total = 1500;
  s.vms = {v};
  EXPECT_TRUE(decide(s, first.state, c, 10'000).plan.balloons.empty());
  // The same 500 faults/s with plenty free (40 % usable) is not a memory shortage.
  auto roomy = guest("roomy", 4 * GiB, 8 * GiB, 4 * GiB * 40 / 100);
  roomy.guest.major_faults_total = 1000;
  s.vms = {roomy};
  const auto r1 = decide(s, {}, c, 0);
  roomy.guest.major_faults_total = 6000;
  s.vms = {roomy};
  EXPECT_TRUE(decide(s, r1.state, c, 10'000).plan.balloons.empty());
}

// A guest re-reading what it evicted asks in proportion to its re-reads (a minute of them per
// tick, within max_step), not by the deadband its free target alone would give it.
TEST(Decide, AReReadingGuestAsksInProportionToItsFaultRate) {
  auto c = base_config();
  c.classes[0].balloon.max_step = SizeOrRatio{4 * GiB};
  auto grown_at = [&c](std::uint64_t faults_per_s) {
    auto s = host(40 * GiB);
    // 17 % usable: inside the comfort band, where the comfort point is only just above its size.
    auto v = guest("reader", 8 * GiB, 16 * GiB, 8 * GiB * 17 / 100);
    v.guest.major_faults_total = 1000;
    s.vms = {v};
    const auto first = decide(s, {}, c, 0);
    v.guest.major_faults_total = 1000 + faults_per_s * 10;
    s.vms = {v};
    const auto second = decide(s, first.state, c, 10'000);
    const auto* b = change_for(second.plan, "reader");
    return b == nullptr ? 8 * GiB : b->to_bytes;
  };
  // 200 faults/s re-read 800 KiB/s: 47 MiB a minute. 5,000 faults/s: 1.14 GiB a minute.
  const std::uint64_t slow = grown_at(200) - 8 * GiB;
  const std::uint64_t fast = grown_at(5000) - 8 * GiB;
  EXPECT_GE(slow, 32 * MiB);
  EXPECT_LT(slow, 200 * MiB);
  EXPECT_NEAR(static_cast<double>(fast), 5000.0 * 4096 * 60, 1.0 * MiB);
  // Bounded by max_step.
  c.classes[0].balloon.max_step = SizeOrRatio{512 * MiB};
  EXPECT_EQ(grown_at(5000), 8 * GiB + 512 * MiB);
}

// Re-reads through read() are no major faults; the guest's disks show them. Disk reads that rise
// after a shrink (its working set evicted) are re-reads: the guest asks back a minute of them,
// tick by tick while they last, and its cache is held for cache_protection as after a rise of
// major faults. Reads as high before the shrink are a guest streaming data, which a larger guest
// would read as much: nothing, and no hold.
TEST(Decide, DiskReadsThatRiseAfterAShrinkAreReReads) {
  auto c = base_config();
  auto after_shrink = [&c](std::uint64_t reads_before_per_s, std::uint64_t reads_after_per_s) {
    auto v = self_rescuing(guest("reader", 4 * GiB, 8 * GiB, 2 * GiB));
    v.guest.major_faults_total = 100;
    v.disk_read_bytes_total = GiB;
    v.disk_reads_at_ms = 0;
    auto s = host(20 * GiB);
    s.vms = {v};
    const auto first = decide(s, {}, c, 0);
    // 5 s later the host is below its reserve: the guest gives a step of its spare.
    v.disk_read_bytes_total = *v.disk_read_bytes_total + 5 * reads_before_per_s;
    v.disk_reads_at_ms = 5000;
    s = host(GiB);
    s.vms = {v};
    const auto shrunk = decide(s, first.state, c, 5000);
    const auto* b = change_for(shrunk.plan, "reader");
    EXPECT_NE(b, nullptr);
    // 10 s later at its new size: using as much as before, its page cache full (1 % free), and
    // reading from disk.
    v.current_bytes = b == nullptr ? 4 * GiB : b->to_bytes;
    v.guest.total_bytes = v.current_bytes;
    v.guest.usable_bytes = v.current_bytes - 2 * GiB;
    v.guest.unused_bytes = v.current_bytes / 100;
    v.disk_read_bytes_total = *v.disk_read_bytes_total + 10 * reads_after_per_s;
    v.disk_reads_at_ms = 15'000;
    s = host(20 * GiB);
    s.vms = {v};
    return std::pair(decide(s, shrunk.state, c, 15'000), v);
  };
  const auto [rereading, reader] = after_shrink(MiB, 200 * MiB);
  const auto* grown = change_for(rereading.plan, "reader");
  ASSERT_NE(grown, nullptr) << rereading.plan.explanation("reader");
  EXPECT_EQ(grown->cause, Cause::guest_need);
  EXPECT_NE(grown->reason.find("re-reading what a shrink evicted"), std::string::npos)
      << grown->reason;
  EXPECT_EQ(grown->to_bytes - grown->from_bytes, 512 * MiB);  // a minute of it: a full step
  EXPECT_EQ(rereading.state.vms.at("uuid-reader").cache_protected_until_ms,
            15'000 + c.classes[0].balloon.cache_protection.count());
  // Grown back a step and still re-reading as much: it asks again (a grow does not end what the
  // shrink caused).
  auto v = reader;
  v.current_bytes = grown->to_bytes;
  v.guest.total_bytes = v.current_bytes;
  v.guest.usable_bytes = v.current_bytes - 2 * GiB;
  v.guest.unused_bytes = v.current_bytes / 100;
  v.disk_read_bytes_total = *v.disk_read_bytes_total + 10 * 200 * MiB;
  v.disk_reads_at_ms = 25'000;
  auto s = host(20 * GiB);
  s.vms = {v};
  const auto again = decide(s, rereading.state, c, 25'000);
  const auto* grown_again = change_for(again.plan, "reader");
  ASSERT_NE(grown_again, nullptr) << again.plan.explanation("reader");
  EXPECT_GT(grown_again->to_bytes, grown->to_bytes);
  const auto streaming = after_shrink(200 * MiB, 200 * MiB).first;
  EXPECT_EQ(change_for(streaming.plan, "reader"), nullptr) << streaming.plan.explanation("reader");
  EXPECT_EQ(streaming.state.vms.at("uuid-reader").cache_protected_until_ms, 0);
}

// A guest whose memory is mostly a cached hot set looks roomy (60 % usable, 20 % free) while it
// re-reads the part a shrink took: with the host below its reserve but far from swapping, it
// grows back to where the shrink found it, from the reserve's upper quarter, and its cache is
// not taken again, since page cache it re-reads is not spare at any share. Only a critical host
// (its survival) leaves it so.
TEST(Decide, ARoomyGuestReReadingWhatAShrinkEvictedGrowsBelowTheReserve) {
  auto c = base_config();
  auto v = self_rescuing(guest("reader", 4 * GiB, 8 * GiB, 3 * GiB));
  v.guest.unused_bytes = 2 * GiB;
  v.disk_read_bytes_total = GiB;
  v.disk_reads_at_ms = 0;
  auto s = host(GiB * 19 / 10);  // below the 2 GiB reserve, above the critical 1.28 GiB
  s.vms = {v};
  const auto first = decide(s, {}, c, 0);
  const auto* shrink = change_for(first.plan, "reader");
  ASSERT_NE(shrink, nullptr) << first.plan.explanation("reader");
  ASSERT_LT(shrink->to_bytes, shrink->from_bytes);
  // 10 s later at its new size: 60 % usable, 20 % free, reading 200 MiB/s from disk (its reads
  // were flat before the shrink).
  auto after = [&](std::uint64_t available) {
    auto w = v;
    w.current_bytes = shrink->to_bytes;
    w.guest.total_bytes = w.current_bytes;
    w.guest.usable_bytes = w.current_bytes * 6 / 10;
    w.guest.unused_bytes = w.current_bytes / 5;
    w.disk_read_bytes_total = GiB + 10 * 200 * MiB;
    w.disk_reads_at_ms = 10'000;
    w.guest.last_update_unix_s = 10;
    auto t = host(available);
    t.vms = {w};
    return decide(t, first.state, c, 10'000);
  };
  const auto tight = after(GiB * 19 / 10);
  const auto* grown = change_for(tight.plan, "reader");
  ASSERT_NE(grown, nullptr) << tight.plan.explanation("reader");
  EXPECT_GT(grown->to_bytes, grown->from_bytes);
  EXPECT_EQ(grown->cause, Cause::guest_need);
  EXPECT_NE(grown->reason.find("re-reading what a shrink evicted"), std::string::npos)
      << grown->reason;
  // Back to where the shrink found it, no further: growth past it is not what it evicted.
  EXPECT_EQ(grown->to_bytes, shrink->from_bytes);
  EXPECT_GT(tight.state.vms.at("uuid-reader").cache_protected_until_ms, 10'000);
  // Below three quarters of its reserve the host keeps the rest for guests in distress.
  const auto low = after(GiB * 14 / 10);
  EXPECT_EQ(change_for(low.plan, "reader"), nullptr) << low.plan.explanation("reader");
  // A critical host keeps what it took: its survival comes first.
  const auto critical = after(GiB);
  const auto* at_critical = change_for(critical.plan, "reader");
  EXPECT_TRUE(at_critical == nullptr || at_critical->to_bytes <= at_critical->from_bytes)
      << critical.plan.explanation("reader");
}

// Shrunk twice in a row, the second time while it already re-read what the first evicted: its
// reads are measured against those before the first shrink, not the re-reads it had by then.
TEST(Decide, ARunOfShrinksMeasuresReReadsFromItsFirstShrink) {
  auto c = base_config();
  auto v = self_rescuing(guest("reader", 4 * GiB, 8 * GiB, 2 * GiB));
  v.guest.unused_bytes = 40 * MiB;
  v.disk_read_bytes_total = GiB;
  auto at = [&v](std::int64_t ms, std::uint64_t available, std::uint64_t reads_per_s,
                 std::int64_t since_ms) {
    v.disk_read_bytes_total =
        *v.disk_read_bytes_total + reads_per_s * static_cast<std::uint64_t>(ms - since_ms) / 1000;
    v.disk_reads_at_ms = ms;
    auto s = host(available);
    s.vms = {v};
    return s;
  };
  const auto first = decide(at(0, 20 * GiB, 0, 0), {}, c, 0);
  // Below the reserve twice: reading 1 MiB/s at the first shrink, 100 MiB/s at the second.
  const auto shrink1 = decide(at(5000, GiB, MiB, 0), first.state, c, 5000);
  ASSERT_NE(change_for(shrink1.plan, "reader"), nullptr);
  v.current_bytes = change_for(shrink1.plan, "reader")->to_bytes;
  v.guest.total_bytes = v.current_bytes;
  v.guest.usable_bytes = v.current_bytes - 2 * GiB;
  const auto shrink2 = decide(at(70'000, GiB, 100 * MiB, 5000), shrink1.state, c, 70'000);
  ASSERT_NE(change_for(shrink2.plan, "reader"), nullptr) << shrink2.plan.explanation("reader");
  v.current_bytes = change_for(shrink2.plan, "reader")->to_bytes;
  v.guest.total_bytes = v.current_bytes;
  v.guest.usable_bytes = v.current_bytes - 2 * GiB;
  // The host has room again; the guest reads 150 MiB/s: re-reads against its 1 MiB/s.
  const auto after = decide(at(80'000, 20 * GiB, 150 * MiB, 70'000), shrink2.state, c, 80'000);
  const auto* grown = change_for(after.plan, "reader");
  ASSERT_NE(grown, nullptr) << after.plan.explanation("reader");
  EXPECT_GT(grown->to_bytes, grown->from_bytes);
  EXPECT_NE(grown->reason.find("re-reading what a shrink evicted"), std::string::npos)
      << grown->reason;
}

// A guest granted growth for its need stays eligible for give-back: an idle host gives it the
// rest of its step at once.
TEST(Decide, AnIdleHostGivesAGuestInNeedTheRestOfItsStep) {
  auto c = base_config();
  c.classes[0].balloon.grow_when_host_idle = true;
  auto s = host(40 * GiB);
  // 14 % usable: short of its 15 % target by a little.
  s.vms = {guest("short", 4 * GiB, 8 * GiB, 4 * GiB * 14 / 100)};
  const auto d = decide(s, {}, c, 0);
  const auto* b = change_for(d.plan, "short");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->to_bytes, 4 * GiB + 512 * MiB) << b->reason;
  EXPECT_EQ(b->cause, Cause::guest_need);  // its own cause stands
}

// A guest reports once a statistics period; ticks may come faster (here every second, against a
// 5 s period). Its fault rate is the faults between two reports over the time between them,
// not over the one tick in which the new report was seen.
TEST(Decide, FaultRatesAreTakenBetweenTheGuestsReports) {
  auto c = base_config();
  auto s = host(20 * GiB);
  // 17 % usable: inside the comfort band, where a high fault rate counts as need.
  auto v = guest("reader", 4 * GiB, 8 * GiB, 4 * GiB * 17 / 100);
  constexpr std::int64_t kReportS = 1'800'000'000;
  v.guest.major_faults_total = 1000;
  v.guest.last_update_unix_s = kReportS;
  v.stats_period_s = 5;
  s.vms = {v};
  auto d = decide(s, {}, c, 0);
  // Four ticks without a new report, then one with it: 60 faults/s over the 5 s, normal disk
  // reads. Taken over the last tick they would be 300/s, and the guest would be grown.
  for (std::int64_t t = 1000; t < 5000; t += 1000) {
    d = decide(s, d.state, c, t);
    EXPECT_TRUE(d.plan.balloons.empty()) << d.plan.explanation("reader");
  }
  v.guest.major_faults_total = 1300;
  v.guest.last_update_unix_s = kReportS + 5;
  s.vms = {v};
  const auto calm = decide(s, d.state, c, 5000);
  EXPECT_TRUE(calm.plan.balloons.empty()) << calm.plan.explanation("reader");
  // 500 faults/s over the next period: grown, and the reason gives that rate.
  d = calm;
  for (std::int64_t t = 6000; t < 10'000; t += 1000) {
    d = decide(s, d.state, c, t);
    EXPECT_TRUE(d.plan.balloons.empty()) << d.plan.explanation("reader");
  }
  v.guest.major_faults_total = 3800;
  v.guest.last_update_unix_s = kReportS + 10;
  s.vms = {v};
  const auto grown = decide(s, d.state, c, 10'000);
  ASSERT_EQ(grown.plan.balloons.size(), 1u) << grown.plan.explanation("reader");
  EXPECT_NE(grown.plan.balloons[0].reason.find("(500 major faults/s)"), std::string::npos)
      << grown.plan.balloons[0].reason;
}

TEST(Forecast, TheilSenSlopeAndTimeToSwap) {
  std::deque<std::pair<std::int64_t, std::uint64_t>> h;
  for (int i = 0; i <= 10; ++i) {
    h.emplace_back(i * 1000, 10 * GiB - static_cast<std::uint64_t>(i) * 100 * MiB);
  }
  h[5].second = 30 * GiB;  // one wild sample does not move a median of slopes
  const auto f = forecast_swap(h, 100 * GiB);
  EXPECT_DOUBLE_EQ(f.available_slope_bytes_per_second, -100.0 * MiB);
  ASSERT_TRUE(f.seconds_to_swap.has_value());
  // From 9 GiB now (10 GiB - 10 x 100 MiB, rounded: 9216 - 1000 MiB) down to 1% of 100 GiB.
  const double now = 10.0 * GiB - 1000.0 * MiB;
  EXPECT_NEAR(*f.seconds_to_swap, (now - 0.01 * 100 * GiB) / (100.0 * MiB), 1e-9);
}

TEST(Forecast, RisingOrFlatMeansNoForecast) {
  std::deque<std::pair<std::int64_t, std::uint64_t>> h{{0, GiB}, {1000, GiB}, {2000, 2 * GiB}};
  EXPECT_FALSE(forecast_swap(h, 10 * GiB).seconds_to_swap.has_value());
  // Two points are no trend, and a fall of 1 % of MemTotal in one step is no cliff.
  EXPECT_FALSE(
      forecast_swap({{0, GiB}, {1000, GiB - 100 * MiB}}, 10 * GiB).seconds_to_swap.has_value());
}

TEST(Alerts, ForecastWarningFiresAndResolvesWithHysteresis) {
  auto c = base_config();
  c.host.swap_forecast.horizon = 120s;
  c.host.swap_forecast.window = 60s;
  PolicyState state;
  std::vector<bool> firing;
  // Falling 100 MiB/s (1000 MiB per 10 s tick) from 12 GiB for 6 ticks, then flat.
  std::uint64_t available = 12 * GiB;
  for (int t = 0; t < 20; ++t) {
    if (t > 0 && t <= 6) {
      available -= 1000 * MiB;
    }
    auto d = decide(host(available), state, c, t * 10'000);
    state = d.state;
    bool on = false;
    for (const auto& a : d.plan.alerts) {
      on = on || a.name == "host-swap-forecast";
    }
    firing.push_back(on);
  }
  EXPECT_FALSE(firing[0]);  // too few points
  EXPECT_TRUE(firing[3]);
  EXPECT_TRUE(firing[6]);
  EXPECT_FALSE(firing.back());
  // The flat stretch must first push the falling samples out of the window; then the alert
  // stays for kAlertClearTicks - 1 more ticks before resolving.
  int last_on = 0;
  for (int t = 0; t < 20; ++t) {
    last_on = firing[t] ? t : last_on;
  }
  EXPECT_GE(last_on, 7);
}

TEST(Alerts, HostSwappingAndGuestDistress) {
  auto c = base_config();
  auto s = host(GiB);  // below the reserve: swap-out at a real rate is host swapping
  s.vms = {guest("starved", GiB, 8 * GiB, 10 * MiB)};  // at its 1 GiB floor, short
  s.vms[0].metadata.balloon_enabled = true;
  auto d1 = decide(s, {}, c, 0);
  s.host.vmstat.swap_out_bytes_total = 40 * MiB;
  auto d2 = decide(s, d1.state, c, 10'000);
  bool swapping = false;
  bool distress = false;
  for (const auto& a : d2.plan.alerts) {
    swapping = swapping || (a.name == "host-swapping" && a.severity == Severity::critical);
    distress = distress || (a.name == "guest-distress" && a.subject == "starved");
  }
  EXPECT_TRUE(swapping);
  EXPECT_TRUE(distress);
  EXPECT_TRUE(d2.plan.host_pressure);
}

TEST(Decide, SuddenStallCountsBeforeAvg10Catches) {
  auto c = base_config();
  auto s = host(3 * GiB);  // near the swap point: under twice the 2 GiB reserve
  s.host.psi_memory = Pressure{PressureLine{0, 0, 0, 100.0}, PressureLine{0, 0, 0, 50.0}};
  s.vms = {guest("idle", 6 * GiB, 8 * GiB, 5 * GiB)};
  const auto first = decide(s, {}, c, 0);
  EXPECT_FALSE(first.plan.host_pressure);
  // 2 s later: 0.5 s more of "some" stall (25 %), avg10 still shows nothing.
  s.host.psi_memory->some.total_seconds = 100.5;
  const auto second = decide(s, first.state, c, 2000);
  EXPECT_TRUE(second.plan.host_pressure);
  EXPECT_NE(second.plan.host_summary.find("memory PSI some 25% > 10%"), std::string::npos)
      << second.plan.host_summary;
  ASSERT_EQ(second.plan.balloons.size(), 1u);  // the idle guest gives a step back
  EXPECT_EQ(second.plan.balloons[0].to_bytes, 6 * GiB - 512 * MiB);
}

// A host paying swap back stalls on the swap-ins; with MemAvailable far above the reserve the
// stall is no shortage a balloon can relieve, so nothing is shrunk. Near the reserve it counts.
TEST(Decide, AStallWhilePayingBackSwapWithAmpleMemoryShrinksNothing) {
  auto c = base_config();
  auto decide_at = [&c](std::uint64_t available) {
    auto s = host(available);
    s.host.meminfo.swap_free_bytes = 14 * GiB;  // 2 GiB in swap
    s.host.psi_memory = Pressure{PressureLine{0, 0, 0, 100.0}, PressureLine{0, 0, 0, 50.0}};
    s.vms = {self_rescuing(guest("idle", 6 * GiB, 8 * GiB, 5 * GiB))};
    const auto first = decide(s, {}, c, 0);
    // 2 s later: 0.5 s of stall (25 %) while 64 MiB/s comes back from swap.
    s.host.psi_memory->some.total_seconds = 100.5;
    s.host.vmstat.swap_in_bytes_total += 128 * MiB;
    return decide(s, first.state, c, 2000);
  };
  const auto ample = decide_at(20 * GiB);
  EXPECT_FALSE(ample.plan.host_pressure) << ample.plan.host_summary;
  EXPECT_TRUE(ample.plan.balloons.empty()) << ample.plan.host_summary;
  EXPECT_NE(ample.plan.host_summary.find("paying back swap"), std::string::npos);
  // At 3 GiB available (under twice the 2 GiB reserve) the same stall is host pressure.
  const auto near = decide_at(3 * GiB);
  EXPECT_TRUE(near.plan.host_pressure) << near.plan.host_summary;
  EXPECT_FALSE(near.plan.balloons.empty());
}

// A stall with no swap at all and MemAvailable far above the reserve (a cgroup at its own memory
// limit, a process's own I/O) is no shortage a balloon can relieve: shrinking guests would only
// evict what they use. The same stall near the swap point is host pressure.
TEST(Decide, AStallWithAmpleMemoryAndNoSwapShrinksNothing) {
  auto c = base_config();
  auto decide_at = [&c](std::uint64_t available) {
    auto s = host(available);
    s.host.meminfo.swap_total_bytes = s.host.meminfo.swap_free_bytes = 0;
    s.host.psi_memory = Pressure{PressureLine{0, 0, 0, 100.0}, PressureLine{0, 0, 0, 50.0}};
    s.vms = {self_rescuing(guest("idle", 6 * GiB, 8 * GiB, 5 * GiB))};
    const auto first = decide(s, {}, c, 0);
    // 2 s later: 0.5 s of "some" and 0.2 s of "full" stall, avg10 at 20 % and 8 %.
    s.host.psi_memory = Pressure{PressureLine{0.2, 0, 0, 100.5}, PressureLine{0.08, 0, 0, 50.2}};
    return decide(s, first.state, c, 2000);
  };
  const auto ample = decide_at(20 * GiB);
  EXPECT_EQ(ample.plan.host_level, HostLevel::ok) << ample.plan.host_summary;
  EXPECT_TRUE(ample.plan.balloons.empty()) << ample.plan.host_summary;
  const auto near = decide_at(3 * GiB);
  EXPECT_EQ(near.plan.host_level, HostLevel::critical) << near.plan.host_summary;
  EXPECT_FALSE(near.plan.balloons.empty());
}

// --- Properties over random inputs.

Snapshot random_snapshot(std::mt19937_64& rng, int vms) {
  std::uniform_int_distribution<std::uint64_t> gib(1, 64);
  auto s = host(std::uniform_int_distribution<std::uint64_t>(0, 40 * GiB)(rng), 128 * GiB);
  for (int i = 0; i < vms; ++i) {
    const std::uint64_t max = gib(rng) * GiB / 4 + GiB;
    const std::uint64_t current = std::uniform_int_distribution<std::uint64_t>(max / 10, max)(rng);
    const std::uint64_t usable = std::uniform_int_distribution<std::uint64_t>(0, current)(rng);
    auto v = guest("vm-" + std::to_string(i), current, max, usable);
    v.metadata.shares = std::uniform_int_distribution<std::uint32_t>(1, 5000)(rng);
    s.vms.push_back(v);
  }
  return s;
}

TEST(DecideProperties, TargetsStayWithinFloorAndMaximum) {
  std::mt19937_64 rng(42);
  auto c = base_config();
  c.classes[0].balloon.floor = SizeOrRatio{0.3};
  c.classes[0].balloon.max_step = SizeOrRatio{0.25};
  for (int round = 0; round < 500; ++round) {
    const auto s = random_snapshot(rng, 12);
    const auto d = decide(s, {}, c, round * 1000);
    for (const auto& b : d.plan.balloons) {
      const auto& vm = *std::find_if(s.vms.begin(), s.vms.end(),
                                     [&](const VmSample& v) { return v.name == b.vm; });
      const auto floor = std::min(static_cast<std::uint64_t>(0.3 * vm.max_bytes), vm.max_bytes);
      EXPECT_GE(b.to_bytes, floor) << b.reason;
      EXPECT_LE(b.to_bytes, vm.max_bytes) << b.reason;
      EXPECT_NE(b.to_bytes, b.from_bytes);
      const auto step =
          b.to_bytes > b.from_bytes ? b.to_bytes - b.from_bytes : b.from_bytes - b.to_bytes;
      // The deadband holds except for a guest in need, which it never blocks.
      if (!(b.to_bytes > b.from_bytes && b.cause == Cause::guest_need)) {
        EXPECT_GE(step, c.classes[0].balloon.deadband_bytes) << b.reason;
      }
      EXPECT_LE(step, static_cast<std::uint64_t>(0.25 * vm.max_bytes) + 1);
    }
  }
}

TEST(DecideProperties, Deterministic) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 100; ++round) {
    const auto s = random_snapshot(rng, 20);
    const auto a = decide(s, {}, base_config(), 5000);
    const auto b = decide(s, {}, base_config(), 5000);
    EXPECT_EQ(a.plan, b.plan);
    EXPECT_EQ(a.state, b.state);
  }
}

// The state moved from tick to tick, as the daemon carries it (with its by-position cache of
// the VMs), decides exactly as a copy of it does (a copy starts without the cache), whatever VMs
// come, go or change places between ticks.
TEST(DecideProperties, CarriedStateDecidesAsACopyDoes) {
  std::mt19937_64 rng(5);
  const auto c = base_config();
  PolicyState moved;
  PolicyState copied;
  for (int tick = 0; tick < 300; ++tick) {
    auto s = random_snapshot(rng, 16);
    if (tick % 3 != 0) {  // most ticks keep the order; others shuffle and drop a few
      std::shuffle(s.vms.begin(), s.vms.end(), rng);
      s.vms.resize(std::uniform_int_distribution<std::size_t>(10, 16)(rng));
    }
    auto a = decide(s, std::move(moved), c, tick * 10'000);
    const PolicyState copy = copied;
    auto b = decide(s, copy, c, tick * 10'000);
    ASSERT_EQ(a.plan, b.plan) << "tick " << tick;
    ASSERT_EQ(a.state, b.state) << "tick " << tick;
    moved = std::move(a.state);
    copied = b.state;
  }
}

// Guests with constant demand behind a balloon: usable memory moves one for one with the
// balloon. Applying each plan and deciding again must settle, not oscillate.
TEST(DecideProperties, NoOscillationUnderConstantInput) {
  std::mt19937_64 rng(99);
  auto c = base_config();
  c.classes[0].balloon.hysteresis = 0s;  // oscillation must not depend on hysteresis to stop
  for (int round = 0; round < 50; ++round) {
    auto s = random_snapshot(rng, 6);
    std::vector<std::uint64_t> demand;  // memory in use by each guest, constant
    for (const auto& v : s.vms) {
      demand.push_back(v.current_bytes - *v.guest.usable_bytes);
    }
    PolicyState state;
    std::map<std::string, std::vector<int>> directions;
    for (int tick = 0; tick < 60; ++tick) {
      const auto d = decide(s, state, c, tick * 10'000);
      state = d.state;
      for (const auto& b : d.plan.balloons) {
        // What a balloon takes from a guest the host gets back, and the other way round.
        s.host.meminfo.available_bytes += b.from_bytes;
        s.host.meminfo.available_bytes -= std::min(s.host.meminfo.available_bytes, b.to_bytes);
        directions[b.vm].push_back(b.to_bytes > b.from_bytes ? 1 : -1);
        for (std::size_t i = 0; i < s.vms.size(); ++i) {
          if (s.vms[i].name == b.vm) {
            s.vms[i].current_bytes = b.to_bytes;
            s.vms[i].guest.usable_bytes = b.to_bytes > demand[i] ? b.to_bytes - demand[i] : 0;
          }
        }
      }
    }
    for (const auto& [vm, dirs] : directions) {
      int reversals = 0;
      for (std::size_t i = 1; i < dirs.size(); ++i) {
        reversals += dirs[i] != dirs[i - 1] ? 1 : 0;
      }
      EXPECT_LE(reversals, 1) << vm << " in round " << round;
    }
    // And it settles: the last ticks change nothing.
    EXPECT_TRUE(decide(s, state, c, 61 * 10'000).plan.balloons.empty()) << "round " << round;
  }
}

}  // namespace
}  // namespace memtide::policy

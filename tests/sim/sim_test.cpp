// The host simulator: the model's bookkeeping, the comparison policies' published rules, and the
// evaluation targets over every scenario.
#include <cmath>

#include <gtest/gtest.h>

#include <memtide/config/loader.hpp>
#include <memtide/sim/run.hpp>

namespace memtide::sim {
namespace {

GuestSpec constant_guest(const std::string& name, double anon_bytes, std::uint64_t cache_limit) {
  GuestSpec g;
  g.name = name;
  g.max_bytes = 4 * GiB;
  g.floor_bytes = 1 * GiB;
  g.kernel_bytes = 128 * MiB;
  g.cache_limit_bytes = cache_limit;
  g.demand_bytes = [anon_bytes](double) { return anon_bytes; };
  return g;
}

TEST(World, HostSwapsExactlyWhatDoesNotFitInRam) {
  HostSpec host;
  host.ram_bytes = 8 * GiB;
  host.overhead_bytes = 1 * GiB;
  // Three guests holding 2 GiB anonymous each, no cache: 1 + 3 * (2 GiB + 128 MiB) = 7.375 GiB.
  World fits(host, {constant_guest("a", 2.0 * GiB, 0), constant_guest("b", 2.0 * GiB, 0),
                    constant_guest("c", 2.0 * GiB, 0)});
  fits.step(1);
  EXPECT_DOUBLE_EQ(fits.host_used_bytes(), 1.0 * GiB + 3 * (2.0 * GiB + 128.0 * MiB));
  EXPECT_DOUBLE_EQ(fits.totals().host_swap_out_bytes, 0);
  EXPECT_DOUBLE_EQ(fits.host_available_bytes(), 8.0 * GiB - fits.host_used_bytes());
  // A fourth does not fit: 9.5 GiB in 8 GiB.
  World over(host, {constant_guest("a", 2.0 * GiB, 0), constant_guest("b", 2.0 * GiB, 0),
                    constant_guest("c", 2.0 * GiB, 0), constant_guest("d", 2.0 * GiB, 0)});
  over.step(1);
  EXPECT_DOUBLE_EQ(over.totals().host_swap_out_bytes, 1.5 * GiB);
  EXPECT_TRUE(over.host_swapping_now());
  const Snapshot s = over.snapshot();
  EXPECT_EQ(s.host.meminfo.available_bytes, 0u);
  EXPECT_EQ(s.host.vmstat.swap_out_bytes_total, static_cast<std::uint64_t>(1.5 * GiB));
  ASSERT_TRUE(s.host.psi_memory.has_value());
  EXPECT_GT(s.host.psi_memory->some.total_seconds, 0);
  // Inflating one balloon to its 1 GiB floor (3 GiB at 512 MiB/s: 6 s) gives the host 3 GiB
  // back, and its guest, whose 2 GiB no longer fit, swaps inside instead.
  over.set_target(3, 0);  // clamped to the floor
  for (int t = 0; t < 6; ++t) {
    over.step(1);
  }
  EXPECT_DOUBLE_EQ(over.guests()[3].balloon, 1.0 * GiB);
  EXPECT_DOUBLE_EQ(over.guests()[3].swapped, 2.0 * GiB - (1.0 * GiB - 128.0 * MiB));
  EXPECT_DOUBLE_EQ(over.host_swapped_bytes(),
                   1.0 * GiB + 3 * (2.0 * GiB + 128.0 * MiB) + 1.0 * GiB - 8.0 * GiB);
  EXPECT_GT(over.totals().guest_pressure_seconds, 0);
  EXPECT_EQ(over.totals().balloon_actions, 1u);
}

TEST(World, PageCacheFillsFreeMemoryAndStaysResidentUntilBallooned) {
  HostSpec host;
  World w(host, {constant_guest("a", 1.0 * GiB, 2 * GiB)});
  for (int t = 0; t < 10; ++t) {
    w.step(1);
  }
  const Guest& g = w.guests()[0];
  EXPECT_DOUBLE_EQ(g.cache, 10 * 8.0 * MiB);  // 8 MiB/s
  EXPECT_DOUBLE_EQ(g.resident, 128.0 * MiB + 1.0 * GiB + g.cache);
  const Snapshot s = w.snapshot();
  ASSERT_EQ(s.vms.size(), 1u);
  EXPECT_EQ(*s.vms[0].guest.disk_caches_bytes, static_cast<std::uint64_t>(g.cache));
  EXPECT_EQ(*s.vms[0].guest.usable_bytes,
            static_cast<std::uint64_t>(4.0 * GiB - 128.0 * MiB - 1.0 * GiB));
  // The balloon takes the cache first (2816 MiB at 512 MiB/s: 6 s), leaving only what is free
  // beside the anonymous memory; resident memory follows the balloon down.
  w.set_target(0, 1280 * MiB);
  for (int t = 0; t < 6; ++t) {
    w.step(1);
  }
  EXPECT_DOUBLE_EQ(w.guests()[0].balloon, 1280.0 * MiB);
  EXPECT_DOUBLE_EQ(w.guests()[0].cache, 1280.0 * MiB - 128.0 * MiB - 1.0 * GiB);
  EXPECT_DOUBLE_EQ(w.guests()[0].resident, 1280.0 * MiB);
  EXPECT_DOUBLE_EQ(w.guests()[0].swapped, 0);
}

// Runs `policy` for one decision on a world whose host has `overhead` in use besides the guests.
World decide_once(Policy& policy, std::uint64_t overhead, std::vector<GuestSpec> guests) {
  HostSpec host;
  host.ram_bytes = 32 * GiB;
  host.overhead_bytes = overhead;
  World w(host, std::move(guests));
  for (int t = 0; t < 300; ++t) {  // let caches fill; the policy acts only at the end
    w.step(1);
  }
  policy.on_second(w);
  return w;
}

TEST(Mom, GrowsEveryGuestFivePercentWhileHostFreeIsAboveTwentyPercent) {
  auto mom = make_mom();
  auto a = constant_guest("a", 1.0 * GiB, 0);
  HostSpec host;
  World w(host, {a});
  w.step(1);
  w.set_target(0, 2 * GiB);
  for (int t = 0; t < 10; ++t) {
    w.step(1);
  }
  mom->on_second(w);
  // Host ~90 % free: grow by 5 % of the balloon, or to used + 20 % of maximum if that is more.
  // used = balloon - MemFree = 128 MiB + 1 GiB, +819.2 MiB = 1.93 GiB < 2.1 GiB.
  EXPECT_DOUBLE_EQ(w.guests()[0].target, static_cast<double>(std::llround(2.0 * GiB * 1.05)));
}

TEST(Mom, ShrinksUnderPressureButCountsPageCacheAsUsed) {
  auto mom = make_mom();
  // 26 GiB of overhead + a guest with 0.5 GiB anonymous and up to 2.4 GiB cache: host free
  // below 20 %. MOM sees used = balloon - MemFree, so the cache protects the guest: it can only
  // shrink by 5 % and never below used + scaled free share.
  const World w = decide_once(*mom, 26 * GiB, {constant_guest("cached", 0.5 * GiB, 2400 * MiB)});
  const Guest& g = w.guests()[0];
  const double free_percent = w.host_available_bytes() / (32.0 * GiB);
  ASSERT_LT(free_percent, 0.20);
  const double used = g.balloon - (g.balloon - 128.0 * MiB - g.anon - g.cache);
  const double guest_free_percent = 0.20 * free_percent / 0.20;
  const double expected = std::max(g.balloon * 0.95, used + guest_free_percent * g.balloon);
  EXPECT_NEAR(g.target, expected, 1.0);
  EXPECT_GT(g.target, g.anon + 128.0 * MiB + 1.0 * GiB);  // far above what memtide could take
}

TEST(Proxmox, ShrinksEveryGuestAtMostOneHundredMebibytesTowardEightyPercent) {
  auto pve = make_proxmox();
  const World w = decide_once(
      *pve, 24 * GiB, {constant_guest("a", 0.5 * GiB, 2 * GiB), constant_guest("b", 2.5 * GiB, 0)});
  ASSERT_LT(0.80 * 32 * GiB - (32.0 * GiB - w.host_available_bytes()), -10.0 * MiB);
  for (const auto& g : w.guests()) {
    EXPECT_DOUBLE_EQ(g.balloon - g.target, 100.0 * MiB) << g.spec.name;
  }
}

TEST(Proxmox, GrowsGuestsShortOfFreeMemoryFirst) {
  auto pve = make_proxmox();
  HostSpec host;
  World w(host, {constant_guest("short", 2.5 * GiB, 0), constant_guest("free", 0.5 * GiB, 0)});
  w.step(1);
  w.set_target(0, 2600 * MiB);  // MemFree of "short" now under 10 % of its balloon
  w.set_target(1, 2 * GiB);
  for (int t = 0; t < 5; ++t) {
    w.step(1);
  }
  pve->on_second(w);
  EXPECT_DOUBLE_EQ(w.guests()[0].target, 2700.0 * MiB);  // +100 MiB
  EXPECT_DOUBLE_EQ(w.guests()[1].target, 2.0 * GiB + 100.0 * MiB);
}

// The evaluation targets, on every scenario at every ratio README's table shows.
TEST(Evaluation, MemtideMeetsItsTargetsAgainstBothBaselines) {
  const auto config = config::default_config();
  for (const auto& name : scenario_names()) {
    for (const double ratio : {1.0, 1.5, 2.0}) {
      const Scenario sc = make_scenario(name, ratio);
      auto memtide = make_memtide(config);
      auto mom = make_mom();
      auto pve = make_proxmox();
      const Totals m = run(sc, *memtide).totals;
      const Totals o = run(sc, *mom).totals;
      const Totals p = run(sc, *pve).totals;
      const std::string where = name + " at " + std::to_string(ratio);
      if (o.host_swap_out_bytes == 0 || p.host_swap_out_bytes == 0) {
        EXPECT_EQ(m.host_swap_out_bytes, 0) << where;
      } else {
        EXPECT_LT(m.host_swap_out_bytes, o.host_swap_out_bytes) << where;
        EXPECT_LT(m.host_swap_out_bytes, p.host_swap_out_bytes) << where;
      }
      // Commands: memtide grows a guest in need at once (whatever the hysteresis), follows its
      // trend and gives memory back on an idle host, which MOM does not, so it may send more
      // commands than MOM, but not many more: at most 1.5 x MOM's where MOM acts, and where it
      // never acts (its 20 % free threshold is never crossed) at most three per guest (a swap
      // forecast acted on and given back).
      if (o.balloon_actions > 0) {
        EXPECT_LE(m.balloon_actions, o.balloon_actions * 3 / 2) << where;
      } else {
        EXPECT_LE(m.balloon_actions, 3 * sc.guests.size()) << where;
      }
      // And guests suffer no more than under either baseline.
      EXPECT_LE(m.guest_pressure_seconds,
                std::max(o.guest_pressure_seconds, p.guest_pressure_seconds))
          << where;
    }
  }
}

TEST(Evaluation, Deterministic) {
  const Scenario sc = make_scenario("noisy", 1.5);
  auto a = make_memtide(config::default_config());
  auto b = make_memtide(config::default_config());
  const Totals x = run(sc, *a).totals;
  const Totals y = run(sc, *b).totals;
  EXPECT_EQ(x.balloon_actions, y.balloon_actions);
  EXPECT_EQ(x.host_swap_out_bytes, y.host_swap_out_bytes);
  EXPECT_EQ(x.guest_pressure_seconds, y.guest_pressure_seconds);
}

TEST(Scenarios, RatiosSetTheNumberOfGuestsAndBadInputIsRefused) {
  EXPECT_EQ(make_scenario("steady", 1.0).guests.size(), 8u);
  EXPECT_EQ(make_scenario("steady", 2.0).guests.size(), 16u);
  EXPECT_THROW(make_scenario("nope", 1.0), std::invalid_argument);
  EXPECT_THROW(make_scenario("steady", 0), std::invalid_argument);
}

}  // namespace
}  // namespace memtide::sim

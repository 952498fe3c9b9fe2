// The host simulator: the model's bookkeeping (each cost it charges), the comparison policies'
// published rules, and the evaluation targets over the named and the random scenarios.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <set>

#include <gtest/gtest.h>

#include <memtide/config/loader.hpp>
#include <memtide/sim/run.hpp>

namespace memtide::sim {
namespace {

Curve constant(double v) {
  return [v](double) { return v; };
}

// A 4 GiB guest with `anon` anonymous memory, `read` file data of which `working_set` it
// re-reads, 1 GiB of swap, no tmpfs.
GuestSpec guest(const std::string& name, double anon, double read = 0, double working_set = 0) {
  GuestSpec g;
  g.name = name;
  g.max_bytes = 4 * GiB;
  g.floor_bytes = 1 * GiB;
  g.kernel_bytes = 128 * MiB;
  g.cache_limit_bytes = static_cast<std::uint64_t>(read);
  g.demand_bytes = constant(anon);
  if (working_set > 0) {
    g.file_working_set_bytes = constant(working_set);
  }
  return g;
}

HostSpec small_host() {
  HostSpec h;
  h.ram_bytes = 8 * GiB;
  h.overhead_bytes = 1 * GiB;
  h.cache_limit_bytes = 0;
  return h;
}

void run_for(World& w, int seconds) {
  for (int t = 0; t < seconds; ++t) {
    w.step();
  }
}

TEST(World, GuestMemoryFitsUntilRamRunsOutThenTheHostSwaps) {
  // Three guests holding 2 GiB anonymous each: 1 + 3 x (2 GiB + 128 MiB) = 7.4 GiB of 8.
  World fits(small_host(), {guest("a", 2.0 * GiB), guest("b", 2.0 * GiB), guest("c", 2.0 * GiB)});
  run_for(fits, 5);
  EXPECT_DOUBLE_EQ(fits.host_guest_ram_bytes(), 3 * (2.0 * GiB + 128.0 * MiB));
  EXPECT_DOUBLE_EQ(fits.totals().host_swap_out_bytes, 0);
  // A fourth does not fit: the host swaps (at most its swap device's bandwidth per second), cold
  // pages first (there are none here), and the guests wait for what comes back in.
  World over(small_host(), {guest("a", 2.0 * GiB), guest("b", 2.0 * GiB), guest("c", 2.0 * GiB),
                            guest("d", 2.0 * GiB)});
  run_for(over, 30);
  EXPECT_GT(over.totals().host_swap_out_bytes, 1.0 * GiB);
  EXPECT_GT(over.totals().host_swap_in_bytes, 0);
  EXPECT_GT(over.totals().guest_pressure_seconds, 0);
  const Snapshot s = over.snapshot();
  EXPECT_LT(s.host.meminfo.available_bytes, 256 * MiB);
  EXPECT_GT(s.host.vmstat.swap_out_bytes_total, 0u);
  EXPECT_LT(s.host.meminfo.swap_free_bytes, s.host.meminfo.swap_total_bytes);
  ASSERT_TRUE(s.host.psi_memory.has_value());
  EXPECT_GT(s.host.psi_memory->some.total_seconds, 0);
}

TEST(World, SwappinessSwapsBeforeThePageCacheIsGone) {
  auto host = small_host();
  host.cache_limit_bytes = 2 * GiB;
  host.swappiness = 100;
  // 6.9 GiB of guests grows into a host whose page cache filled the rest: reclaim takes half
  // from the cache and half from guest memory (cold pages: free memory the guests once touched).
  World w(host, {guest("a", 1.0 * GiB, 2.5 * GiB), guest("b", 1.0 * GiB, 2.5 * GiB)});
  run_for(w, 400);
  EXPECT_GT(w.totals().host_swap_out_bytes, 0);
  EXPECT_GT(w.host_cache_bytes(), 0);
  // Cold pages mostly, since kswapd's LRU is approximate: some pages the guests use go too (an
  // eviction of a cold page is ten times as likely per byte) and come back in, which the guests
  // wait for.
  const Totals& t = w.totals();
  std::cout << "swap-out " << t.host_swap_out_bytes / MiB << " MiB, of it hot "
            << t.host_hot_swap_out_bytes / MiB << " MiB; swap-in " << t.host_swap_in_bytes / MiB
            << " MiB\n";
  EXPECT_GT(t.host_hot_swap_out_bytes, 0);
  EXPECT_LT(t.host_hot_swap_out_bytes, t.host_swap_out_bytes / 2);
  EXPECT_GT(t.host_swap_in_bytes, 0);
  EXPECT_LE(t.host_swap_in_bytes, t.host_hot_swap_out_bytes + 1.0);
  EXPECT_GT(t.guest_pressure_seconds, 0);
}

TEST(World, BalloonsActLateMoveAtFiniteSpeedAndStopAtWhatTheGuestCanFree) {
  World w(small_host(), {guest("a", 2.0 * GiB)});
  run_for(w, 1);
  w.set_target(0, 0, /*honour_floor=*/false);  // as low as possible
  run_for(w, 1);
  EXPECT_DOUBLE_EQ(w.guests()[0].balloon, 4.0 * GiB);  // the command is still on its way
  run_for(w, 2);
  EXPECT_DOUBLE_EQ(w.guests()[0].balloon, 4.0 * GiB - 2 * 256.0 * MiB);  // 256 MiB/s
  run_for(w, 30);
  // It pushed 1 GiB to the guest's swap and stopped: kernel + 1 GiB it cannot swap + 16 MiB.
  const Guest& g = w.guests()[0];
  EXPECT_DOUBLE_EQ(g.balloon, 128.0 * MiB + 1.0 * GiB + 16.0 * MiB);
  EXPECT_DOUBLE_EQ(g.swapped, 1.0 * GiB - 16.0 * MiB);
  EXPECT_EQ(w.totals().refused_commands, 1u);
  EXPECT_EQ(w.totals().guest_ooms, 0u);
  // With the floor honoured the same command stops at the floor; deflating is fast (1 GiB/s).
  w.set_target(0, 0);
  run_for(w, 3);
  EXPECT_DOUBLE_EQ(w.guests()[0].balloon, 1.0 * GiB + 144.0 * MiB);  // above the floor already
  w.set_target(0, 4 * GiB);
  run_for(w, 4);
  EXPECT_DOUBLE_EQ(w.guests()[0].balloon, 4.0 * GiB);
  EXPECT_EQ(w.totals().balloon_actions, 3u);
}

// The guest above with a virtio-mem device over all but its 1 GiB of base memory: unplugging
// moves pages but swaps nothing, so the blocks holding its 2 GiB stay plugged (a partial unplug,
// counted as refused), where the balloon pushed 1 GiB of it to the guest's swap.
TEST(World, VirtioMemUnplugsWholeBlocksButNotWhatTheGuestHolds) {
  auto g = guest("a", 2.0 * GiB);
  g.virtio_mem_block_bytes = 2 * MiB;
  g.virtio_mem_base_bytes = 1 * GiB;
  World w(small_host(), {g});
  run_for(w, 1);
  w.set_target(0, 0, /*honour_floor=*/false);
  run_for(w, 40);
  const Guest& v = w.guests()[0];
  // kernel 128 MiB + 2 GiB + 16 MiB, rounded up to whole blocks above the base.
  EXPECT_DOUBLE_EQ(v.balloon, 128.0 * MiB + 2.0 * GiB + 16.0 * MiB);
  EXPECT_DOUBLE_EQ(v.swapped, 0);
  EXPECT_EQ(w.totals().refused_commands, 1u);
  // Its device as the collector would show it: whole blocks, plugged above requested.
  const auto vm = w.snapshot().vms[0];
  ASSERT_EQ(vm.virtio_mem.size(), 1u);
  EXPECT_EQ(vm.virtio_mem[0].max_bytes, 3 * GiB);
  EXPECT_EQ(vm.virtio_mem[0].requested_bytes, 0u);
  EXPECT_EQ(vm.virtio_mem[0].plugged_bytes, 128 * MiB + GiB + 16 * MiB);
  EXPECT_EQ(virtio_mem_unplug_pending_bytes(vm), 128 * MiB + GiB + 16 * MiB);
  // A size that is not whole blocks above the base: the device rounds up, the balloon takes the
  // rest, and the guest has exactly the size asked for.
  w.set_target(0, 3 * GiB + 1 * MiB);
  run_for(w, 5);
  EXPECT_DOUBLE_EQ(w.guests()[0].balloon, 3.0 * GiB + 1.0 * MiB);
  EXPECT_EQ(w.snapshot().vms[0].virtio_mem[0].requested_bytes, 2 * GiB + 2 * MiB);
}

// Autodeflate gives back the balloon's part only: a guest shrunk through its device cannot
// rescue itself, and its tmpfs growth kills it where the balloon alone would have deflated.
TEST(World, AutodeflateCannotPlugBlocksBack) {
  auto g = guest("tmp", 0.5 * GiB);
  g.swap_bytes = 0;
  g.autodeflate = true;
  g.virtio_mem_block_bytes = 2 * MiB;
  g.virtio_mem_base_bytes = 1 * GiB;
  g.shmem_bytes = [](double t) { return t < 20 ? 0.0 : 1.0 * GiB; };
  World w(small_host(), {g});
  run_for(w, 1);
  w.set_target(0, 1 * GiB);
  run_for(w, 50);
  EXPECT_EQ(w.totals().guest_ooms, 1u);
  EXPECT_LE(w.guests()[0].balloon, 1.0 * GiB + 2.0 * MiB);
}

TEST(World, AGuestWhoseDemandOutgrowsBalloonAndSwapIsKilled) {
  // 1 GiB balloon, then its tmpfs grows by 1 GiB: unreclaimable, no swap can take it.
  auto g = guest("tmp", 0.5 * GiB);
  g.swap_bytes = 0;
  g.shmem_bytes = [](double t) { return t < 20 ? 0.0 : 1.0 * GiB; };
  World w(small_host(), {g});
  run_for(w, 1);
  w.set_target(0, 1 * GiB);
  run_for(w, 18);
  EXPECT_EQ(w.totals().guest_ooms, 0u);
  run_for(w, 2);
  EXPECT_EQ(w.totals().guest_ooms, 1u);
  // The workload restarts a minute later, and is killed again while nobody grows the guest.
  run_for(w, 30);
  EXPECT_EQ(w.totals().guest_ooms, 1u);
  // The kill relieved the guest of nothing in the score: each second of the restart is a second
  // short of memory, and the 512 MiB the workload would hold is lost work.
  EXPECT_GE(w.totals().guest_pressure_seconds, 30);
  EXPECT_NEAR(w.totals().lost_work_byte_seconds, 31 * 0.5 * GiB, 1.5 * 0.5 * GiB);
  // With swap, anonymous memory goes there instead.
  auto s = guest("swapper", 1.5 * GiB);
  World v(small_host(), {s});
  run_for(v, 1);
  v.set_target(0, 1 * GiB);
  run_for(v, 20);
  EXPECT_EQ(v.totals().guest_ooms, 0u);
  EXPECT_GT(v.guests()[0].swapped, 0);
}

TEST(World, AnAutodeflatingBalloonTakesBackWhatTheGuestLacksInsteadOfAnOom) {
  // The tmpfs growth that kills the guest above, with a balloon that deflates itself.
  auto g = guest("tmp", 0.5 * GiB);
  g.swap_bytes = 0;
  g.autodeflate = true;
  g.shmem_bytes = [](double t) { return t < 20 ? 0.0 : 1.0 * GiB; };
  World w(small_host(), {g});
  run_for(w, 1);
  w.set_target(0, 1 * GiB);
  run_for(w, 18);
  EXPECT_NEAR(w.guests()[0].balloon, 1.0 * GiB, 1.0 * MiB);
  run_for(w, 30);
  EXPECT_EQ(w.totals().guest_ooms, 0u);
  // It took what it lacked (kernel 128 MiB + tmpfs 1 GiB + anonymous 512 MiB) and kept it.
  EXPECT_GE(w.guests()[0].balloon, 1.625 * GiB);
  EXPECT_LE(w.guests()[0].balloon, 4.0 * GiB);
  EXPECT_TRUE(w.snapshot().vms[0].balloon_autodeflate.value_or(false));
}

TEST(World, EvictingTheFileWorkingSetCostsRefaultsAndPressure) {
  // 1 GiB anonymous, 1.5 GiB of file data of which 1 GiB is re-read.
  World w(small_host(), {guest("reader", 1.0 * GiB, 1.5 * GiB, 1.0 * GiB)});
  run_for(w, 120);
  EXPECT_DOUBLE_EQ(w.totals().refault_bytes, 0);  // it starts with its working set cached
  const double pressure = w.totals().guest_pressure_seconds;
  EXPECT_DOUBLE_EQ(pressure, 0);
  // A balloon down to 1.6 GiB leaves ~350 MiB of cache: 650 MiB of the working set is re-read.
  w.set_target(0, 1600 * MiB);
  run_for(w, 60);
  EXPECT_NEAR(w.guests()[0].evicted, 1.0 * GiB - (1600.0 - 128 - 1024) * MiB, 1.0);
  EXPECT_GT(w.totals().refault_bytes, 0);
  EXPECT_GT(w.totals().evicted_byte_seconds, 0);
  EXPECT_GT(w.totals().guest_pressure_seconds, 50);
  // The guest reports the refaults as major faults.
  EXPECT_GT(w.snapshot().vms[0].guest.major_faults_total.value_or(0), 1000u);
}

TEST(World, ReReadPagesAreCachedAgainOnceTheGuestHasRoom) {
  // 1 GiB anonymous and a 2 GiB working set that fills its cache at 1 MiB/s only: the working set
  // comes back into the cache mostly by being re-read.
  GuestSpec g = guest("reader", 1.0 * GiB, 2.0 * GiB, 2.0 * GiB);
  g.cache_fill_bytes_per_s = 1.0 * MiB;
  World w(small_host(), {g});
  run_for(w, 1);
  w.set_target(0, 1200 * MiB);  // the working set is evicted, all but ~70 MiB
  run_for(w, 30);
  ASSERT_GT(w.guests()[0].evicted, 1.9 * GiB);
  w.set_target(0, 4 * GiB);
  run_for(w, 5);
  // Re-reads run at evicted / 100 s: the evicted part halves in about 70 s, where the fill rate
  // alone would have cached 70 MiB of it.
  run_for(w, 70);
  EXPECT_LT(w.guests()[0].evicted, 1.1 * GiB);
  run_for(w, 400);
  EXPECT_LT(w.guests()[0].evicted, 64.0 * MiB);
}

TEST(World, ReReadsThroughReadShowOnlyAsDiskReads) {
  // The same shrunk reader, once reading its files through mappings and once with read().
  GuestSpec mapped = guest("mapped", 1.0 * GiB, 2.0 * GiB, 2.0 * GiB);
  GuestSpec plain = mapped;
  plain.name = "plain";
  plain.mapped_read_share = 0;
  World w(small_host(), {mapped, plain});
  run_for(w, 40);  // its cache filled, as far as it goes
  const Snapshot before = w.snapshot();
  w.set_target(0, 1200 * MiB);
  w.set_target(1, 1200 * MiB);
  run_for(w, 60);
  const Snapshot after = w.snapshot();
  auto rise = [&](std::size_t i, auto field) {
    return static_cast<double>(field(after.vms[i]) - field(before.vms[i]));
  };
  const auto faults = [](const VmSample& v) { return v.guest.major_faults_total.value_or(0); };
  const auto reads = [](const VmSample& v) { return v.disk_read_bytes_total.value_or(0); };
  // Both re-read about the same from disk (some 1.9 GiB evicted, re-read at 1 % a second).
  EXPECT_GT(rise(0, reads), 0.5 * GiB);
  EXPECT_NEAR(rise(1, reads), rise(0, reads), 0.05 * rise(0, reads));
  // Only the mapped reader's re-reads are major faults.
  EXPECT_GT(rise(0, faults) * 4096, 0.9 * rise(0, reads));
  EXPECT_EQ(rise(1, faults), 0);
  EXPECT_EQ(after.vms[1].disk_reads_at_ms, after.monotonic_ms);
}

TEST(World, LongReReadsCountOnlyPastAMinuteWithTheHostAboveItsReserve) {
  // Shrunk to 1200 MiB, a guest with 1 GiB anonymous and a 2 GiB working set re-reads about
  // 1.9 GiB / 100 s: some 4,900 major faults/s, for as long as it stays so small.
  GuestSpec g = guest("reader", 1.0 * GiB, 2.0 * GiB, 2.0 * GiB);
  HostSpec roomy = small_host();  // about 3 GiB available: above the 2 GiB reserve
  HostSpec short_host = small_host();
  short_host.reserve_bytes = 6 * GiB;  // the same host, below a reserve of 6 GiB
  World above(roomy, {g});
  World below(short_host, {g});
  for (World* w : {&above, &below}) {
    run_for(*w, 1);
    w->set_target(0, 1200 * MiB);
  }
  run_for(above, 50);
  EXPECT_GT(above.guests()[0].pages_in_now, kLongRereadPagesPerS);
  EXPECT_EQ(above.totals().long_reread_seconds, 0);  // its first minute is not counted
  run_for(above, 50);
  run_for(below, 100);
  // Re-reading from a few seconds in (the balloon inflates at 256 MiB/s): counted from a minute
  // after that to t = 101 s, at most 41 s.
  EXPECT_GT(above.totals().long_reread_seconds, 30);
  EXPECT_LE(above.totals().long_reread_seconds, 41);
  EXPECT_EQ(below.totals().long_reread_seconds, 0);
  // Given its room back, it stops re-reading within seconds, and nothing more is counted.
  above.set_target(0, 4 * GiB);
  run_for(above, 200);
  const double counted = above.totals().long_reread_seconds;
  run_for(above, 100);
  EXPECT_EQ(above.totals().long_reread_seconds, counted);
}

TEST(World, FreePageReportingReturnsFreeMemoryToTheHost) {
  auto boot = guest("booted", 0.5 * GiB);
  boot.demand_bytes = [](double t) { return t < 10 ? 3.0 * GiB : 0.5 * GiB; };
  World plain(small_host(), {boot});
  boot.free_page_reporting = true;
  World reporting(small_host(), {boot});
  run_for(plain, 60);
  run_for(reporting, 60);
  // Without it, what the guest touched while booting stays resident; with it, only what it uses.
  EXPECT_NEAR(plain.guests()[0].resident, 128.0 * MiB + 3.0 * GiB, 1.0);
  EXPECT_NEAR(reporting.guests()[0].resident, 128.0 * MiB + 0.5 * GiB, 1.0 * MiB);
}

TEST(World, StatisticsArriveLateAndGoStaleWhenTheGuestStarves) {
  auto g = guest("g", 1.0 * GiB);
  g.stats_period_s = 5;
  g.demand_bytes = [](double t) { return t < 20 ? 1.0 * GiB : 1.5 * GiB; };
  World w(small_host(), {g});
  run_for(w, 19);
  // Sampled at 1, 6, 11 and 16 s: three seconds old now.
  Snapshot s = w.snapshot();
  ASSERT_EQ(s.vms.size(), 1u);
  EXPECT_EQ(s.vms[0].stats_status, GuestStatsStatus::ok);
  EXPECT_EQ(*s.vms[0].guest.last_update_unix_s, s.collected_at_unix_ms / 1000 - 3);
  EXPECT_NEAR(static_cast<double>(*s.vms[0].guest.usable_bytes),
              4.0 * GiB - 128.0 * MiB - 1.0 * GiB, 1.0);
  // Squeezed until its swap is nearly full, it stops reporting; three periods later: stale.
  w.set_target(0, 700 * MiB, /*honour_floor=*/false);
  run_for(w, 40);
  s = w.snapshot();
  EXPECT_EQ(s.vms[0].stats_status, GuestStatsStatus::stale);
}

// The kernel's PSI trigger memtided registers: silent while nothing stalls, and while the host
// swaps it fires once per 2 s window, not every second.
TEST(World, ThePressureTriggerFiresOnStallsAtMostOncePerWindow) {
  auto count_events = [](World& w, int seconds) {
    int events = 0;
    double last = -10;
    for (int t = 0; t < seconds; ++t) {
      w.step();
      if (w.memory_pressure_event()) {
        ++events;
        EXPECT_GE(w.now() - last, 2.0) << "twice in one window";
        last = w.now();
      }
    }
    return events;
  };
  World fits(small_host(), {guest("a", 2.0 * GiB), guest("b", 2.0 * GiB)});
  EXPECT_EQ(count_events(fits, 60), 0);
  World over(small_host(), {guest("a", 2.0 * GiB), guest("b", 2.0 * GiB), guest("c", 2.0 * GiB),
                            guest("d", 2.0 * GiB)});
  const int events = count_events(over, 60);
  EXPECT_GT(over.totals().host_swap_out_bytes, 1.0 * GiB);
  EXPECT_GE(events, 10);
  EXPECT_LE(events, 30);
}

TEST(World, TrickleShowsInTheCountersOnlyAndSqueezesAreTimed) {
  auto host = small_host();
  host.swap_trickle_bytes_per_s = 16 * 1024;
  host.squeezes.push_back({10, 20, 3 * GiB});
  host.reserve_bytes = 2 * GiB;
  World w(host, {guest("a", 2.0 * GiB), guest("b", 0.5 * GiB)});
  run_for(w, 60);
  EXPECT_EQ(w.snapshot().host.vmstat.swap_out_bytes_total, 60u * 16 * 1024);
  // 1 + 2.1 + 0.6 GiB in use, 3 GiB pinned from 10 s to 30 s: below the 2 GiB reserve for those
  // 20 s and above it once the squeeze ends.
  EXPECT_DOUBLE_EQ(w.totals().reserve_recovery_seconds, 20);
  EXPECT_DOUBLE_EQ(w.totals().host_swap_out_bytes, 0);
}

// --- The comparison policies, rule by rule.

// A world with `overhead` in use besides the guests, run for five minutes with the policy
// acting only at the end.
World settled(std::uint64_t overhead, std::vector<GuestSpec> guests) {
  HostSpec host;
  host.ram_bytes = 32 * GiB;
  host.overhead_bytes = overhead;
  host.cache_limit_bytes = 0;
  World w(host, std::move(guests));
  run_for(w, 300);
  return w;
}

TEST(Mom, ShrinksOnTheAverageOfTenSamplesCountingPageCacheAsUsedAndIgnoresFloors) {
  auto mom = make_mom();
  // 26 GiB of overhead and a guest with 0.5 GiB anonymous and 2.4 GiB cache: host free 13 %.
  World w = settled(26 * GiB, {guest("cached", 0.5 * GiB, 2400 * MiB)});
  // Ten samples 5 s apart before the rules run.
  for (int t = 0; t < 50; ++t) {
    w.step();
    mom->on_second(w);
  }
  const Guest& g = w.guests()[0];
  ASSERT_LT(g.pending_target + g.target, 2 * g.balloon);  // it asked for less
  const double free_percent = (w.host_free_bytes() + w.host_cache_bytes()) / (32.0 * GiB);
  ASSERT_LT(free_percent, 0.20);
  // used = balloon - MemFree: the cache protects the guest from being shrunk below it.
  const double used = g.balloon - (g.balloon - 128.0 * MiB - g.anon - g.cache);
  const double floor = used + 0.20 * (free_percent / 0.20) * g.balloon;
  const double asked = g.pending_target >= 0 ? g.pending_target : g.target;
  EXPECT_NEAR(asked, std::max(g.balloon * 0.95, floor), 0.01 * GiB);
  // No floor in libvirt mode: a guest using little is taken below its 1 GiB floor.
  World lean = settled(29 * GiB, {guest("lean", 0.2 * GiB)});
  for (int t = 0; t < 2000; ++t) {
    lean.step();
    mom->on_second(lean);
  }
  EXPECT_LT(lean.guests()[0].balloon, 1.0 * GiB);
}

TEST(Proxmox, StartsAtTheMinimumTakesFromGuestsWithFreeMemoryFirstAndReportsFreePages) {
  auto pve = make_proxmox();
  // "free" has far more MemFree than a quarter of its minimum; "busy" has less.
  World w = settled(24 * GiB, {guest("busy", 3.7 * GiB), guest("free", 0.5 * GiB)});
  pve->on_second(w);
  // Both are sent to their minimum first (Proxmox starts VMs ballooned to it).
  EXPECT_DOUBLE_EQ(w.guests()[0].pending_target, 1.0 * GiB);
  EXPECT_DOUBLE_EQ(w.guests()[1].pending_target, 1.0 * GiB);
  EXPECT_TRUE(w.guests()[0].spec.free_page_reporting);
  // Later, with both back at maximum and the host over its 80 % goal, only "free" shrinks, by
  // 100 MiB.
  w.set_target(0, 4 * GiB);
  w.set_target(1, 4 * GiB);
  run_for(w, 10);
  pve->on_second(w);
  EXPECT_LT(w.guests()[1].pending_target, 0.0 + 4.0 * GiB);
  EXPECT_DOUBLE_EQ(w.guests()[1].pending_target, 4.0 * GiB - 100.0 * MiB);
  EXPECT_LT(w.guests()[0].pending_target, 0);  // "busy" left alone
}

// memtide gets each guest's floor as domain metadata would carry it, so it shrinks a lean guest to
// the operator's 10 % floor rather than its own default of 30 %, and never below it.
TEST(MemtideInTheWorld, KeepsToTheScenariosFloorAsDomainMetadata) {
  auto lean = guest("lean", 0.2 * GiB);
  lean.floor_bytes = 400 * MiB;
  World w = settled(31 * GiB + 512 * MiB, {lean});  // under the 2 GiB reserve
  const auto floor = w.snapshot().vms[0].metadata.floor;
  ASSERT_TRUE(floor.has_value());
  EXPECT_EQ(floor->resolve(4 * GiB), 400 * MiB);
  auto memtide = make_memtide(config::default_config());
  double lowest = w.guests()[0].balloon;
  for (int t = 0; t < 1200; ++t) {
    w.step();
    memtide->on_second(w);
    lowest = std::min(lowest, w.guests()[0].balloon);
  }
  EXPECT_LT(lowest, 0.3 * 4 * GiB) << "below the default floor: the operator's was used";
  EXPECT_GE(lowest, 400.0 * MiB);
}

// --- The evaluation.

struct Three {
  Totals memtide, mom, proxmox;
};

Three run_all(const Scenario& sc) {
  auto m = make_memtide(config::default_config());
  auto o = make_mom();
  auto p = make_proxmox();
  return {run(sc, *m).totals, run(sc, *o).totals, run(sc, *p).totals};
}

// The named scenarios at every ratio docs/evaluation.md's table shows: memtide never costs more
// guest OOMs than the better baseline. (Where it swaps more than one of them, docs/evaluation.md
// says why.)
TEST(Evaluation, NamedScenariosNoMoreOomsThanEitherBaseline) {
  for (const auto& name : scenario_names()) {
    for (const double ratio : {1.0, 1.5, 2.0}) {
      const auto r = run_all(make_scenario(name, ratio));
      const std::string where = name + " at " + std::to_string(ratio);
      EXPECT_LE(r.memtide.guest_ooms, std::min(r.mom.guest_ooms, r.proxmox.guest_ooms)) << where;
    }
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Over seeded random scenarios (the check that constants were not tuned to the named ones):
// memtide's median guest OOMs are below both baselines' and its median host swap-out below
// MOM's. 1,000 seeds, the set the policy's targets are stated on (`memtide-sim --random 1000`
// prints the full distribution): the medians of host swap lie a few GiB apart with a tail of
// 100 GiB (60 seeds could not tell them apart), and half the scenarios end with at most 2 guest
// OOMs under memtide by a margin of a few scenarios, which the first 500 alone do not keep.
TEST(Evaluation, RandomScenariosFewerOomsThanBothAndLessSwapThanMomAtTheMedian) {
  std::vector<double> ooms[3];
  std::vector<double> swap[3];
  std::vector<double> hot_swap_in[3];
  std::vector<double> long_rereads[3];
  for (std::uint64_t seed = 1; seed <= 1000; ++seed) {
    const auto r = run_all(make_random_scenario(seed));
    const Totals* t[3] = {&r.memtide, &r.mom, &r.proxmox};
    for (int p = 0; p < 3; ++p) {
      ooms[p].push_back(static_cast<double>(t[p]->guest_ooms));
      swap[p].push_back(t[p]->host_swap_out_bytes);
      hot_swap_in[p].push_back(t[p]->host_swap_in_bytes);
      long_rereads[p].push_back(t[p]->long_reread_seconds);
    }
  }
  EXPECT_LT(median(ooms[0]), median(ooms[1]));
  EXPECT_LT(median(ooms[0]), median(ooms[2]));
  // The policy's target: at most a quarter of MOM's guest OOMs at the median.
  EXPECT_LE(4 * median(ooms[0]), median(ooms[1]));
  EXPECT_LT(median(swap[0]), median(swap[1]));
  // Guests wait on host swap-in no more than under the better baseline.
  EXPECT_LE(median(hot_swap_in[0]), std::min(median(hot_swap_in[1]), median(hot_swap_in[2])));
  // Guests re-reading above 1,000 faults/s for over a minute with the host above its reserve:
  // under a VM-minute in the median scenario, and a tenth of MOM's at most.
  EXPECT_LE(median(long_rereads[0]), 60);
  EXPECT_LE(10 * median(long_rereads[0]), median(long_rereads[1]));
}

TEST(Evaluation, Deterministic) {
  const Scenario sc = make_random_scenario(7);
  const Scenario again = make_random_scenario(7);
  ASSERT_EQ(sc.guests.size(), again.guests.size());
  auto a = make_memtide(config::default_config());
  auto b = make_memtide(config::default_config());
  const Totals x = run(sc, *a).totals;
  const Totals y = run(again, *b).totals;
  EXPECT_EQ(x.balloon_actions, y.balloon_actions);
  EXPECT_EQ(x.host_swap_out_bytes, y.host_swap_out_bytes);
  EXPECT_EQ(x.guest_pressure_seconds, y.guest_pressure_seconds);
  EXPECT_EQ(x.guest_ooms, y.guest_ooms);
}

TEST(Scenarios, RatiosSetTheNumberOfGuestsRandomOnesVaryAndBadInputIsRefused) {
  EXPECT_EQ(make_scenario("steady", 1.0).guests.size(), 8u);
  EXPECT_EQ(make_scenario("steady", 2.0).guests.size(), 16u);
  EXPECT_THROW(make_scenario("nope", 1.0), std::invalid_argument);
  EXPECT_THROW(make_scenario("steady", 0), std::invalid_argument);
  // Random scenarios cover the ranges they promise.
  std::set<std::uint64_t> rams;
  std::uint64_t largest = 0;
  for (std::uint64_t seed = 1; seed <= 100; ++seed) {
    const auto sc = make_random_scenario(seed);
    rams.insert(sc.host.ram_bytes);
    double total = 0;
    for (const auto& g : sc.guests) {
      EXPECT_GE(g.max_bytes, GiB);
      EXPECT_LE(g.max_bytes, 64 * GiB);
      EXPECT_LE(g.floor_bytes, g.max_bytes);
      largest = std::max(largest, g.max_bytes);
      total += static_cast<double>(g.max_bytes);
    }
    EXPECT_GE(total, static_cast<double>(sc.host.ram_bytes));
  }
  EXPECT_EQ(rams.size(), 4u);
  EXPECT_GE(largest, 32 * GiB);
}

}  // namespace
}  // namespace memtide::sim

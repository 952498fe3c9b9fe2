// The KSM controller's decisions, rule by rule.
#include <gtest/gtest.h>

#include <memtide/policy/ksm.hpp>

#include "../support/sizes.hpp"

namespace memtide::policy {
namespace {

using memtide::test_sizes::GiB;

// A fresh controller memory for decisions whose history does not matter.
KsmMemory& scratch() {
  static KsmMemory m;
  m = KsmMemory{};
  return m;
}

KsmSample running(std::uint64_t run) {
  KsmSample s;
  s.run = run;
  s.pages_to_scan = 100;
  s.sleep_ms = 20;
  return s;
}

config::KsmSection mode(config::KsmMode m) {
  config::KsmSection c;
  c.mode = m;
  return c;
}

// 64 GiB of guest RAM, 48 GiB of it resident, of which `saved` would merge away.
KsmEstimate estimate(std::uint64_t saved) {
  KsmEstimate e;
  e.candidate_bytes = 64 * GiB;
  e.resident_bytes = 48 * GiB;
  e.savings_bytes = saved;
  e.page_size_bytes = 4096;
  return e;
}

// 64 GiB / 4 KiB pages over 120 s of 20 ms wake-ups: 16,777,216 / 6,000 = 2796 pages each.
constexpr std::uint64_t kPace = 2796;

TEST(DecideKsm, Table) {
  struct Case {
    const char* name;
    KsmSample now;
    std::optional<KsmEstimate> est;
    bool pressed;
    config::KsmMode mode;
    std::optional<std::uint64_t> run;  // nullopt: no change
    const char* reason_has;
  };
  const Case cases[] = {
      {"off stops a running ksmd", running(1), estimate(32 * GiB), true, config::KsmMode::off, 0,
       "ksm.mode off"},
      {"unmanaged never writes", running(1), estimate(0), true, config::KsmMode::unmanaged,
       std::nullopt, "unmanaged"},
      {"off leaves a stopped one", running(0), std::nullopt, true, config::KsmMode::off,
       std::nullopt, "ksm.mode off"},
      {"on merges whatever", running(0), estimate(0), false, config::KsmMode::on, 1, "mode on"},
      {"auto waits for an estimate", running(0), std::nullopt, true, config::KsmMode::automatic,
       std::nullopt, "no page-scan estimate"},
      {"auto: savings under the minimum", running(0), estimate(GiB), true,
       config::KsmMode::automatic, std::nullopt,
       "estimated savings 2% of guest memory < "
       "ksm.min_savings 5%: not merging"},
      {"auto: savings fell, running: stop", running(1), estimate(GiB), true,
       config::KsmMode::automatic, 0, ": stopped"},
      {"auto: savings but host at ease", running(0), estimate(16 * GiB), false,
       config::KsmMode::automatic, std::nullopt, "not under or heading toward pressure"},
      {"auto: savings and pressure: merge", running(0), estimate(16 * GiB), true,
       config::KsmMode::automatic, 1,
       "estimated savings 33% of guest memory and the host is "
       "pressed: merging"},
      {"auto: keeps merging once started", running(1), estimate(16 * GiB), false,
       config::KsmMode::automatic, 1, ": merging"},
  };
  for (const auto& c : cases) {
    const auto d = decide_ksm(c.now, c.est, c.pressed, std::nullopt, mode(c.mode), scratch(), 0);
    if (c.run) {
      ASSERT_TRUE(d.settings.has_value()) << c.name;
      EXPECT_EQ(d.settings->run, c.run) << c.name;
    } else {
      EXPECT_FALSE(d.settings.has_value()) << c.name;
    }
    EXPECT_NE(d.reason.find(c.reason_has), std::string::npos) << c.name << ": " << d.reason;
  }
}

TEST(DecideKsm, MergingCostsMoreThanItSavesTwoFullScansAfterItBegan) {
  const auto automatic = mode(config::KsmMode::automatic);
  KsmMemory memory;
  auto now = running(1);
  now.general_profit_bytes = -4096 * 1000;
  now.full_scans_total = 40;  // earlier merging on this host, before memtide started it
  // Just begun: the metadata costs before anything merged; that is no reason to stop.
  auto d = decide_ksm(now, estimate(16 * GiB), true, std::nullopt, automatic, memory, 0);
  ASSERT_TRUE(d.settings.has_value());
  EXPECT_EQ(d.settings->run, 1u) << d.reason;
  now.full_scans_total = 41;
  d = decide_ksm(now, estimate(16 * GiB), true, std::nullopt, automatic, memory, 10'000);
  EXPECT_EQ(d.settings->run, 1u) << d.reason;
  now.full_scans_total = 42;  // two full scans since merging began, still a loss: stop
  d = decide_ksm(now, estimate(16 * GiB), true, std::nullopt, automatic, memory, 20'000);
  ASSERT_TRUE(d.settings.has_value());
  EXPECT_EQ(d.settings->run, 0u);
  EXPECT_NE(
      d.reason.find("costs more than it saves (general_profit -4096000 B after 2 full scans)"),
      std::string::npos)
      << d.reason;
  // Stopped: not started again within the hold-off, however good the estimate looks...
  const auto stopped = running(0);
  d = decide_ksm(stopped, estimate(16 * GiB), true, std::nullopt, automatic, memory,
                 20'000 + kKsmCostHoldOffMs - 1);
  EXPECT_FALSE(d.settings.has_value());
  EXPECT_NE(d.reason.find("cost more than it saved"), std::string::npos) << d.reason;
  // ...and after it.
  d = decide_ksm(stopped, estimate(16 * GiB), true, std::nullopt, automatic, memory,
                 20'000 + kKsmCostHoldOffMs);
  ASSERT_TRUE(d.settings.has_value());
  EXPECT_EQ(d.settings->run, 1u);
}

TEST(DecideKsm, PaceForTheTargetScanTimeWithinTheCpuBudget) {
  const auto automatic = mode(config::KsmMode::automatic);
  const auto fast = decide_ksm(running(0), estimate(16 * GiB), true, 0.05, automatic, scratch(), 0);
  ASSERT_TRUE(fast.settings.has_value());
  EXPECT_EQ(fast.settings->sleep_ms, 20u);
  EXPECT_EQ(fast.settings->pages_to_scan, kPace);
  // ksmd used 40 % of a core with a 20 % budget at the target pace: half the pages per wake-up.
  auto at_pace = running(1);
  at_pace.pages_to_scan = kPace;
  const auto slowed = decide_ksm(at_pace, estimate(16 * GiB), true, 0.40, automatic, scratch(), 0);
  ASSERT_TRUE(slowed.settings.has_value());
  EXPECT_EQ(slowed.settings->pages_to_scan, kPace / 2);
  EXPECT_NE(slowed.reason.find("ksmd used 40% of a core, budget 20%"), std::string::npos);
  // Under budget after a slow-down: back toward the target, at most twofold per tick.
  auto slow = running(1);
  slow.pages_to_scan = 1000;
  const auto climbing = decide_ksm(slow, estimate(16 * GiB), true, 0.05, automatic, scratch(), 0);
  ASSERT_TRUE(climbing.settings.has_value());
  EXPECT_EQ(climbing.settings->pages_to_scan, 2000u);
  const auto near = decide_ksm(slow, estimate(16 * GiB), true, 0.15, automatic, scratch(), 0);
  EXPECT_EQ(near.settings->pages_to_scan, 1333u);  // 1000 x 20 % / 15 %
  // Tiny candidate memory: never below the floor of 64 pages per wake-up.
  KsmEstimate tiny = estimate(0);
  tiny.candidate_bytes = tiny.resident_bytes = GiB / 1024;
  tiny.savings_bytes = GiB / 2048;
  const auto small = decide_ksm(running(0), tiny, true, std::nullopt, automatic, scratch(), 0);
  ASSERT_TRUE(small.settings.has_value());
  EXPECT_EQ(small.settings->pages_to_scan, kKsmMinPagesToScan);
  // A configured target scan time and sleep: 64 GiB over 60 s at 100 ms = 600 wake-ups.
  auto configured = automatic;
  configured.full_scan_time = std::chrono::seconds(60);
  configured.sleep = std::chrono::milliseconds(100);
  const auto paced =
      decide_ksm(running(0), estimate(16 * GiB), true, std::nullopt, configured, scratch(), 0);
  EXPECT_EQ(paced.settings->sleep_ms, 100u);
  EXPECT_EQ(paced.settings->pages_to_scan, 27962u);  // 16,777,216 / 600 = 27962.03
}

TEST(DecideKsm, ScanTimeAdvisorWhereTheKernelHasIt) {
  auto c = mode(config::KsmMode::on);
  c.advisor = config::KsmAdvisor::scan_time;
  c.max_cpu_ratio = 0.15;
  c.full_scan_time = std::chrono::seconds(90);
  auto modern = running(0);
  modern.advisor_mode = "none";
  const auto d = decide_ksm(modern, estimate(0), false, std::nullopt, c, scratch(), 0);
  ASSERT_TRUE(d.settings.has_value());
  EXPECT_EQ(d.settings->advisor_mode, "scan-time");
  EXPECT_EQ(d.settings->advisor_max_cpu_percent, 15u);
  EXPECT_EQ(d.settings->advisor_target_scan_time_seconds, 90u);
  EXPECT_FALSE(d.settings->pages_to_scan.has_value()) << "the advisor sets it";
  // An older kernel: memtide paces ksmd itself and says so.
  const auto old = decide_ksm(running(0), estimate(0), false, std::nullopt, c, scratch(), 0);
  EXPECT_FALSE(old.settings->advisor_mode.has_value());
  EXPECT_TRUE(old.settings->pages_to_scan.has_value());
  EXPECT_NE(old.reason.find("no scan-time advisor"), std::string::npos);
  // Advisor not configured but on in the kernel: turned off, or it overrides pages_to_scan.
  auto advised = running(1);
  advised.advisor_mode = "scan-time";
  const auto own = decide_ksm(advised, estimate(0), false, std::nullopt, mode(config::KsmMode::on),
                              scratch(), 0);
  EXPECT_EQ(own.settings->advisor_mode, "none");
}

TEST(DecideKsm, UnmergeOnlyWhenConfigured) {
  auto c = mode(config::KsmMode::off);
  EXPECT_EQ(
      decide_ksm(running(1), std::nullopt, false, std::nullopt, c, scratch(), 0).settings->run, 0u);
  c.unmerge = true;
  EXPECT_EQ(
      decide_ksm(running(1), std::nullopt, false, std::nullopt, c, scratch(), 0).settings->run, 2u);
  auto stopped_with_merged = running(0);
  stopped_with_merged.shared_bytes = 4096;
  EXPECT_EQ(decide_ksm(stopped_with_merged, std::nullopt, false, std::nullopt, c, scratch(), 0)
                .settings->run,
            2u);
  EXPECT_FALSE(decide_ksm(running(2), std::nullopt, false, std::nullopt, c, scratch(), 0)
                   .settings.has_value());
  EXPECT_FALSE(decide_ksm(running(0), std::nullopt, false, std::nullopt, c, scratch(), 0)
                   .settings.has_value());
}

TEST(DecideKsm, MergeAcrossNodesOnlyWhereTheKernelHasIt) {
  auto c = mode(config::KsmMode::automatic);
  c.merge_across_nodes = false;
  // Non-NUMA kernel (no such file): nothing to write, and no error every tick.
  EXPECT_FALSE(decide_ksm(running(1), std::nullopt, false, std::nullopt, c, scratch(), 0)
                   .settings.has_value());
  auto numa = running(1);
  numa.merge_across_nodes = true;
  const auto d = decide_ksm(numa, std::nullopt, false, std::nullopt, c, scratch(), 0);
  ASSERT_TRUE(d.settings.has_value());
  EXPECT_EQ(d.settings->merge_across_nodes, false);
  EXPECT_EQ(d.settings->run, 1u) << "merging resumes after the run=2 the change needs";
  numa.merge_across_nodes = false;
  EXPECT_FALSE(
      decide_ksm(numa, std::nullopt, false, std::nullopt, c, scratch(), 0).settings.has_value());
}

}  // namespace
}  // namespace memtide::policy

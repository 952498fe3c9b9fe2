// The KSM controller's decisions, rule by rule.
#include <gtest/gtest.h>

#include <memtide/policy/ksm.hpp>

namespace memtide::policy {
namespace {

constexpr std::uint64_t GiB = 1ULL << 30;

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

// 64 GiB of guest RAM of which `saved` would merge away.
KsmEstimate estimate(std::uint64_t saved) {
  return {64 * GiB, 48 * GiB, saved};
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
       "estimated savings 25% of guest memory and the host is "
       "pressed: merging"},
      {"auto: keeps merging once started", running(1), estimate(16 * GiB), false,
       config::KsmMode::automatic, 1, ": merging"},
  };
  for (const auto& c : cases) {
    const auto d = decide_ksm(c.now, c.est, c.pressed, std::nullopt, mode(c.mode), 4096);
    if (c.run) {
      ASSERT_TRUE(d.settings.has_value()) << c.name;
      EXPECT_EQ(d.settings->run, c.run) << c.name;
    } else {
      EXPECT_FALSE(d.settings.has_value()) << c.name;
    }
    EXPECT_NE(d.reason.find(c.reason_has), std::string::npos) << c.name << ": " << d.reason;
  }
}

TEST(DecideKsm, MergingCostsMoreThanItSaves) {
  auto now = running(1);
  now.general_profit_bytes = -4096 * 1000;
  now.full_scans_total = 3;
  const auto d = decide_ksm(now, estimate(16 * GiB), true, std::nullopt,
                            mode(config::KsmMode::automatic), 4096);
  ASSERT_TRUE(d.settings.has_value());
  EXPECT_EQ(d.settings->run, 0u);
  EXPECT_NE(d.reason.find("costs more than it saves"), std::string::npos);
}

TEST(DecideKsm, PaceForTheTargetScanTimeWithinTheCpuBudget) {
  const auto fast = decide_ksm(running(0), estimate(16 * GiB), true, 0.05,
                               mode(config::KsmMode::automatic), 4096);
  ASSERT_TRUE(fast.settings.has_value());
  EXPECT_EQ(fast.settings->sleep_ms, kKsmSleepMs);
  EXPECT_EQ(fast.settings->pages_to_scan, kPace);
  // ksmd used 40 % of a core with a 20 % budget: half the pages per wake-up.
  const auto slowed = decide_ksm(running(1), estimate(16 * GiB), true, 0.40,
                                 mode(config::KsmMode::automatic), 4096);
  ASSERT_TRUE(slowed.settings.has_value());
  EXPECT_EQ(slowed.settings->pages_to_scan, kPace / 2);
  EXPECT_NE(slowed.reason.find("ksmd used 40% of a core, budget 20%"), std::string::npos);
  // Tiny candidate memory: never below the floor of 64 pages per wake-up.
  const auto tiny = decide_ksm(running(0), KsmEstimate{GiB / 1024, GiB / 1024, GiB / 2048}, true,
                               std::nullopt, mode(config::KsmMode::automatic), 4096);
  ASSERT_TRUE(tiny.settings.has_value());
  EXPECT_EQ(tiny.settings->pages_to_scan, kKsmMinPagesToScan);
}

}  // namespace
}  // namespace memtide::policy

// The decision history: what it records from a tick, its byte budget, its selection and its file
// form, which is read back from an untrusted file.
#include <gtest/gtest.h>

#include <memtide/report/history.hpp>

#include "../policy/policy_fixtures.hpp"

namespace memtide::report {
namespace {

using policy::testing::GiB;
using policy::testing::MiB;
using EntryKind = HistoryEntry::Kind;
constexpr std::int64_t kEpoch = 1'800'000'000'000;

// Two guests on a host with room; `t_ms` after kEpoch.
struct Tick {
  Snapshot snapshot;
  config::Config config = policy::testing::base_config();
  policy::Plan plan;
  policy::PolicyState state;
  std::vector<policy::Alert> alerts;
  explicit Tick(std::int64_t t_ms) {
    snapshot = policy::testing::host(30 * GiB);
    snapshot.monotonic_ms = t_ms;
    snapshot.collected_at_unix_ms = kEpoch + t_ms;
    snapshot.vms = {policy::testing::guest("web-1", 4 * GiB, 8 * GiB, 3 * GiB),
                    policy::testing::guest("db", 6 * GiB, 8 * GiB, 4 * GiB)};
    decide();
  }
  // The plan and state for the snapshot as it is now.
  void decide() {
    auto decision = policy::decide(snapshot, {}, config, snapshot.monotonic_ms);
    plan = std::move(decision.plan);
    state = std::move(decision.state);
  }
  TickReport report() const {
    TickReport r;
    r.snapshot = &snapshot;
    r.plan = &plan;
    r.state = &state;
    r.config = &config;
    r.alerts = &alerts;
    return r;
  }
};

RecentCommand shrink(const std::string& vm, std::int64_t t_ms) {
  policy::BalloonChange c;
  c.vm = vm;
  c.uuid = "uuid-" + vm;
  c.from_bytes = 4 * GiB;
  c.to_bytes = 3 * GiB;
  c.floor_bytes = 1 * GiB;
  c.cause = policy::Cause::host_pressure;
  c.reason = "host MemAvailable 1 GiB < reserve 2 GiB";
  return {kEpoch + t_ms, c, "applied"};
}

std::vector<const HistoryEntry*> of_kind(const History& h, EntryKind kind) {
  std::vector<const HistoryEntry*> out;
  for (const auto& e : h.entries()) {
    if (e.kind == kind) {
      out.push_back(&e);
    }
  }
  return out;
}

TEST(History, RecordsEachCommandWithItsFiguresAndSamplesEveryVmOnceAMinute) {
  History h;
  Tick first(0);
  h.record(first.report(), {shrink("web-1", 0)});
  const auto commands = of_kind(h, EntryKind::command);
  ASSERT_EQ(commands.size(), 1u);
  const HistoryEntry& c = *commands[0];
  EXPECT_EQ(c.vm, "web-1");
  EXPECT_EQ(c.unix_ms, kEpoch);
  EXPECT_EQ(c.balloon_bytes, 4 * GiB);
  EXPECT_EQ(c.target_bytes, 3 * GiB);
  EXPECT_EQ(c.floor_bytes, 1 * GiB);
  EXPECT_EQ(c.max_bytes, 8 * GiB);
  EXPECT_EQ(c.usable_bytes, 3 * GiB);  // what the policy judged it by
  EXPECT_EQ(c.what, "host-pressure");
  EXPECT_EQ(c.result, "applied");
  EXPECT_EQ(c.detail, "host MemAvailable 1 GiB < reserve 2 GiB");
  // The commanded VM's figures are in its command; the other one is sampled.
  auto samples = of_kind(h, EntryKind::sample);
  ASSERT_EQ(samples.size(), 1u);
  EXPECT_EQ(samples[0]->vm, "db");
  EXPECT_EQ(samples[0]->balloon_bytes, 6 * GiB);
  EXPECT_EQ(samples[0]->usable_bytes, 4 * GiB);
  EXPECT_EQ(samples[0]->floor_bytes, 1 * GiB);

  // Within the minute nothing more. After it, only what moved: web-1 is not at its command's
  // target (this fixture's balloon stays where it was); db is as it was.
  h.record(Tick(30'000).report(), {});
  EXPECT_EQ(of_kind(h, EntryKind::sample).size(), 1u);
  h.record(Tick(kHistorySampleMs).report(), {});
  samples = of_kind(h, EntryKind::sample);
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[1]->vm, "web-1");
  EXPECT_EQ(samples[1]->unix_ms, kEpoch + kHistorySampleMs);
  // db's usable memory moves by a thirty-second of its maximum: sampled.
  Tick moved(2 * kHistorySampleMs);
  moved.snapshot.vms[1].guest.usable_bytes = 4 * GiB - 8 * GiB / 32;
  moved.decide();
  h.record(moved.report(), {});
  samples = of_kind(h, EntryKind::sample);
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(samples[2]->vm, "db");
  // A minute later db is back at 4 GiB usable: sampled; web-1 has not moved: not.
  h.record(Tick(3 * kHistorySampleMs).report(), {});
  samples = of_kind(h, EntryKind::sample);
  ASSERT_EQ(samples.size(), 4u);
  EXPECT_EQ(samples[3]->vm, "db");
  // Ten minutes after its last sample, web-1 is sampled though it has not moved.
  h.record(Tick(kHistorySampleMs + kHistoryHeartbeatMs - 1).report(), {});
  EXPECT_EQ(of_kind(h, EntryKind::sample).size(), 4u);
  h.record(Tick(kHistorySampleMs + kHistoryHeartbeatMs).report(), {});
  samples = of_kind(h, EntryKind::sample);
  ASSERT_EQ(samples.size(), 5u);
  EXPECT_EQ(samples[4]->vm, "web-1");
}

TEST(History, AlertsAreRecordedWhenTheyFireAndWhenTheyResolve) {
  History h;
  Tick t0(0);
  t0.alerts = {{"guest-distress", "db", policy::Severity::warning, "db at its floor", 0},
               {"host-swapping", "", policy::Severity::critical, "host swapping 5 MiB/s", 0}};
  h.record(t0.report(), {});
  Tick t1(1000);
  t1.alerts = t0.alerts;  // still firing: nothing new
  h.record(t1.report(), {});
  Tick t2(2000);
  t2.alerts = {t0.alerts[1]};
  h.record(t2.report(), {});
  const auto fired = of_kind(h, EntryKind::alert_fired);
  const auto resolved = of_kind(h, EntryKind::alert_resolved);
  ASSERT_EQ(fired.size(), 2u);
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0]->what, "guest-distress");
  EXPECT_EQ(resolved[0]->vm, "db");
  EXPECT_EQ(resolved[0]->unix_ms, kEpoch + 2000);
  const auto host_alert =
      std::find_if(fired.begin(), fired.end(), [](const HistoryEntry* e) { return e->vm.empty(); });
  ASSERT_NE(host_alert, fired.end());
  EXPECT_EQ((*host_alert)->what, "host-swapping");
  EXPECT_EQ((*host_alert)->result, "critical");
  // A guest alert is no sample: db is still sampled a minute after its first sample only.
  EXPECT_EQ(of_kind(h, EntryKind::sample).size(), 2u);
}

TEST(History, TheOldestEntriesGoOncePastItsBudget) {
  HistoryEntry e;
  e.kind = EntryKind::sample;
  e.vm = "web-1";
  e.balloon_bytes = e.max_bytes = 1 * GiB;
  const std::size_t budget = 10 * e.bytes();
  History h(budget);
  for (int i = 0; i < 100; ++i) {
    e.unix_ms = kEpoch + i;
    h.add(e);
  }
  EXPECT_LE(h.bytes(), budget);
  ASSERT_EQ(h.entries().size(), 10u);
  EXPECT_EQ(h.entries().front().unix_ms, kEpoch + 90);
  EXPECT_EQ(h.entries().back().unix_ms, kEpoch + 99);
  // Long texts count too.
  e.detail = std::string(budget, 'x');
  h.add(e);
  EXPECT_LE(h.bytes(), budget);
}

TEST(History, SelectsVmsByGlobFromATimeAndKeepsHostAlerts) {
  History h;
  const auto add = [&h](EntryKind kind, const std::string& vm, std::int64_t t) {
    HistoryEntry e;
    e.kind = kind;
    e.vm = vm;
    e.unix_ms = kEpoch + t;
    e.balloon_bytes = e.max_bytes = 1 * GiB;
    h.add(e);
  };
  add(EntryKind::sample, "web-1", 0);
  add(EntryKind::sample, "db", 10);
  add(EntryKind::alert_fired, "", 20);
  add(EntryKind::command, "web-2", 30);
  add(EntryKind::sample, "db", 40);
  const auto names = [](const std::vector<const HistoryEntry*>& v) {
    std::vector<std::string> out;
    for (const auto* e : v) {
      out.push_back(e->vm + "@" + std::to_string(e->unix_ms - kEpoch));
    }
    return out;
  };
  EXPECT_EQ(names(h.select({"web-*"}, 0)),
            (std::vector<std::string>{"web-1@0", "@20", "web-2@30"}));
  EXPECT_EQ(names(h.select({"db"}, kEpoch + 15)), (std::vector<std::string>{"@20", "db@40"}));
  EXPECT_EQ(h.select({}, INT64_MIN).size(), 5u);
}

TEST(History, RoundTripsThroughItsFile) {
  History h;
  Tick t(0);
  t.alerts = {{"host-swapping", "", policy::Severity::critical, "host swapping", 0}};
  h.record(t.report(), {shrink("web-1", 0)});
  EXPECT_TRUE(h.changed());
  std::size_t skipped = 99;
  auto back = history_from_text(history_to_text(h), kHistoryMaxBytes, &skipped);
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(skipped, 0u);
  EXPECT_EQ(back->entries(), h.entries());
  EXPECT_FALSE(back->changed());
}

TEST(History, AFileFromOutsideIsCheckedEntryByEntry) {
  EXPECT_FALSE(history_from_text("not json", kHistoryMaxBytes));
  EXPECT_FALSE(history_from_text(R"({"format": 2, "entries": []})", kHistoryMaxBytes));
  EXPECT_FALSE(history_from_text(R"({"format": 1})", kHistoryMaxBytes));
  EXPECT_FALSE(history_from_text(
      "{\"format\": 1, \"entries\": [" + std::string(100, '[') + std::string(100, ']') + "]}",
      kHistoryMaxBytes));
  const std::string text = R"({"format": 1, "entries": [
    {"kind": "sample", "unix_ms": 10, "vm": "a", "balloon_bytes": 1, "max_bytes": 2},
    {"kind": "sample", "unix_ms": 20, "vm": "a", "balloon_bytes": -1, "max_bytes": 2},
    {"kind": "explosion", "unix_ms": 30},
    {"kind": "command", "unix_ms": 40, "vm": "", "balloon_bytes": 1, "max_bytes": 2},
    {"kind": "alert-fired", "unix_ms": 5, "what": "host-swapping"},
    {"kind": "alert-fired", "unix_ms": "50", "what": "host-swapping"},
    {"kind": "alert-fired", "unix_ms": 60, "what": "host-swapping", "detail": ")" +
                           std::string(10000, 'x') + R"("}
  ]})";
  std::size_t skipped = 0;
  auto h = history_from_text(text, kHistoryMaxBytes, &skipped);
  ASSERT_TRUE(h) << h.error().to_string();
  // A negative size, an unknown kind, a command without a VM, one out of time order and a
  // time that is not a number are skipped; a long text is cut.
  EXPECT_EQ(skipped, 5u);
  ASSERT_EQ(h->entries().size(), 2u);
  EXPECT_EQ(h->entries()[1].detail.size(), kMaxHistoryTextBytes + 3);  // with "..."
}

}  // namespace
}  // namespace memtide::report

// Traces: the writer's rotation and bounds, the reader's handling of damaged lines, and replay
// through the policy.
#include "trace.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "simulate.hpp"
#include "snapshot_json.hpp"

namespace memtide::daemon {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
constexpr std::uint64_t MiB = 1ULL << 20;
constexpr std::uint64_t GiB = 1ULL << 30;

class TraceDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/memtide-trace-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::vector<Snapshot> read_all(const std::string& file, std::vector<Error>* errors = nullptr) {
    std::vector<Snapshot> out;
    const auto status = read_trace(
        file, [&](Snapshot&& s) { out.push_back(std::move(s)); },
        [&](const Error& e) {
          if (errors != nullptr) {
            errors->push_back(e);
          }
        });
    EXPECT_TRUE(status.ok()) << status.error().to_string();
    return out;
  }
  std::string dir_;
};

Snapshot numbered(std::int64_t i) {
  Snapshot s;
  s.collected_at_unix_ms = 1'700'000'000'000 + i * 1000;
  s.monotonic_ms = i * 1000;
  s.host.meminfo.total_bytes = 64 * GiB;
  s.host.meminfo.available_bytes = static_cast<std::uint64_t>(i) * MiB;
  return s;
}

TEST_F(TraceDir, AppendsOneLinePerSnapshotWithMode0600) {
  TraceWriter writer({path("t.jsonl"), 1 * MiB, 3});
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(writer.append(numbered(i)).ok());
  }
  const auto back = read_all(path("t.jsonl"));
  ASSERT_EQ(back.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(back[static_cast<std::size_t>(i)], numbered(i));
  }
  struct stat st {};
  ASSERT_EQ(stat(path("t.jsonl").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(TraceDir, RotatesBySizeKeepsFilesAndLosesNothingInsideTheBound) {
  const std::size_t line = to_json(numbered(100)).dump().size() + 1;
  const std::uint64_t max = 10 * line;  // ten lines per file
  TraceWriter writer({path("t.jsonl"), max, 3});
  for (int i = 100; i < 145; ++i) {  // 45 lines: 4 full files and a half
    ASSERT_TRUE(writer.append(numbered(i)).ok());
  }
  for (const auto& f : {"t.jsonl", "t.jsonl.1", "t.jsonl.2"}) {
    ASSERT_TRUE(fs::exists(path(f))) << f;
    EXPECT_LE(fs::file_size(path(f)), max) << f;
  }
  EXPECT_FALSE(fs::exists(path("t.jsonl.3")));
  // Oldest first: the 25 newest snapshots, in order, none missing.
  std::vector<Snapshot> all;
  for (const auto& f : {"t.jsonl.2", "t.jsonl.1", "t.jsonl"}) {
    for (auto& s : read_all(path(f))) {
      all.push_back(std::move(s));
    }
  }
  ASSERT_EQ(all.size(), 25u);
  for (std::size_t k = 0; k < all.size(); ++k) {
    EXPECT_EQ(all[k], numbered(120 + static_cast<std::int64_t>(k)));
  }
}

TEST_F(TraceDir, OneFileIsTruncatedAtItsBound) {
  const std::size_t line = to_json(numbered(100)).dump().size() + 1;
  TraceWriter writer({path("t.jsonl"), 4 * line, 1});
  for (int i = 100; i < 110; ++i) {
    ASSERT_TRUE(writer.append(numbered(i)).ok());
  }
  EXPECT_FALSE(fs::exists(path("t.jsonl.1")));
  const auto back = read_all(path("t.jsonl"));
  ASSERT_EQ(back.size(), 2u);  // 108 and 109: truncated before 108
  EXPECT_EQ(back[0], numbered(108));
}

TEST_F(TraceDir, ContinuesAnExistingFileAndReportsUnwritablePaths) {
  {
    TraceWriter writer({path("t.jsonl"), 1 * MiB, 2});
    ASSERT_TRUE(writer.append(numbered(1)).ok());
  }
  TraceWriter again({path("t.jsonl"), 1 * MiB, 2});
  ASSERT_TRUE(again.append(numbered(2)).ok());
  EXPECT_EQ(read_all(path("t.jsonl")).size(), 2u);

  TraceWriter nowhere({path("missing-dir/t.jsonl"), 1 * MiB, 2});
  const auto s = nowhere.append(numbered(1));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().file, path("missing-dir/t.jsonl"));
  EXPECT_EQ(s.error().sys_errno, ENOENT);
}

TEST_F(TraceDir, ReaderSkipsDamagedLinesNamingFileAndLine) {
  std::ofstream(path("t.jsonl")) << to_json(numbered(1)).dump() << "\n"
                                 << "{\"format\": 1, \"collected_at_unix_ms\": 5}\n"
                                 << "\n"
                                 << to_json(numbered(2)).dump() << "\n"
                                 << to_json(numbered(3)).dump().substr(0, 40);  // torn
  std::vector<Error> errors;
  const auto back = read_all(path("t.jsonl"), &errors);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[1], numbered(2));
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].to_string(), path("t.jsonl") + ":2: monotonic_ms: missing");
  EXPECT_EQ(errors[1].line, 5);
  EXPECT_NE(errors[1].message.find("not valid JSON"), std::string::npos);

  const auto missing = read_trace(
      path("absent"), [](Snapshot&&) {}, [](const Error&) {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().file, path("absent"));
}

// --- Replay.

std::shared_ptr<const config::Config> replay_config() {
  auto c = std::make_shared<config::Config>();
  config::VmClass all;
  all.name = "default";
  all.match_name = "*";
  all.balloon.min = SizeOrRatio{1 * GiB};
  all.balloon.guest_free_ratio = 0.20;
  all.balloon.max_step = SizeOrRatio{256 * MiB};
  all.balloon.deadband_bytes = 32 * MiB;
  c->classes = {all};
  c->host.reserve_bytes = 2 * GiB;
  c->host.swap_forecast.window = 30s;
  c->host.swap_forecast.horizon = 120s;
  return c;
}

// A host losing 100 MiB/s of MemAvailable for ten ticks, then steady for 40 (longer than the
// forecast window); one guest short of memory (10 % usable, target 20 %) throughout.
std::vector<Snapshot> falling_then_steady() {
  std::vector<Snapshot> out;
  for (int i = 0; i < 50; ++i) {
    Snapshot s;
    s.collected_at_unix_ms = 1'700'000'000'000 + i * 1000;
    s.monotonic_ms = 5'000'000 + i * 1000;
    s.host.meminfo.total_bytes = 64 * GiB;
    s.host.meminfo.available_bytes =
        (20 * GiB) - static_cast<std::uint64_t>(std::min(i, 10)) * 100 * MiB;
    s.hypervisor_up = true;
    VmSample vm;
    vm.name = "web-1";
    vm.uuid = "u1";
    vm.state = VmState::running;
    vm.stats_status = GuestStatsStatus::ok;
    vm.max_bytes = 8 * GiB;
    vm.current_bytes = 4 * GiB;
    vm.guest.usable_bytes = 4 * GiB / 10;
    s.vms = {vm};
    out.push_back(s);
  }
  return out;
}

TEST(Replay, EventsAndSummaryFollowTheDecisions) {
  const auto config = replay_config();
  Replay replay(config);
  std::vector<ReplayEvent> events;
  for (const auto& s : falling_then_steady()) {
    for (auto& e : replay.feed(s)) {
      events.push_back(std::move(e));
    }
  }
  // The same decisions straight from decide(), tick by tick.
  policy::PolicyState state;
  std::size_t direct_balloons = 0;
  std::uint64_t direct_grown = 0;
  for (const auto& s : falling_then_steady()) {
    auto d = policy::decide(s, std::move(state), *config, s.monotonic_ms);
    state = std::move(d.state);
    direct_balloons += d.plan.balloons.size();
    for (const auto& b : d.plan.balloons) {
      direct_grown += b.to_bytes - b.from_bytes;
    }
  }
  const auto& sum = replay.summary();
  EXPECT_EQ(sum.ticks, 50u);
  EXPECT_EQ(sum.max_vms, 1u);
  EXPECT_GT(direct_balloons, 0u);
  EXPECT_EQ(sum.grows, direct_balloons);
  EXPECT_EQ(sum.shrinks, 0u);
  EXPECT_EQ(sum.grown_bytes, direct_grown);
  EXPECT_EQ(*sum.min_available_bytes, 20 * GiB - 1000 * MiB);
  // 19 GiB left at 100 MiB/s is about 194 s: outside the 120 s horizon, so no alert; the
  // forecast itself is reported.
  ASSERT_TRUE(sum.min_seconds_to_swap.has_value());
  EXPECT_NEAR(*sum.min_seconds_to_swap, (19.0 * 1024 - 0.01 * 64 * 1024 + 24) / 100, 5);
  std::size_t balloon_events = 0;
  for (const auto& e : events) {
    if (e.kind == ReplayEvent::Kind::balloon) {
      ++balloon_events;
      EXPECT_EQ(e.subject, "web-1");
      EXPECT_NE(e.text.find("guest short of memory"), std::string::npos) << e.text;
    }
  }
  EXPECT_EQ(balloon_events, direct_balloons);
}

TEST(Replay, AlertsFireAndResolveWithTheirTimeCounted) {
  auto c = std::make_shared<config::Config>(*replay_config());
  c->host.swap_forecast.horizon = 600s;  // now the fall is within the horizon
  Replay replay(c);
  std::vector<ReplayEvent> events;
  for (const auto& s : falling_then_steady()) {
    for (auto& e : replay.feed(s)) {
      if (e.kind != ReplayEvent::Kind::balloon) {
        events.push_back(std::move(e));
      }
    }
  }
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events.front().kind, ReplayEvent::Kind::alert_firing);
  EXPECT_EQ(events.front().subject, "host-swap-forecast");
  EXPECT_EQ(events.back().kind, ReplayEvent::Kind::alert_resolved);
  const auto& a = replay.summary().alerts.at("host-swap-forecast");
  EXPECT_EQ(a.fired, 1u);
  // Fired at tick 2 (three points), resolved at the tick where the alert left the plan.
  const std::int64_t expected_ms = events.back().unix_ms - events.front().unix_ms - 1000;
  EXPECT_EQ(a.firing_ms, expected_ms);
  EXPECT_NE(describe(replay.summary()).find("alert host-swap-forecast: fired 1 time, firing for"),
            std::string::npos)
      << describe(replay.summary());
}

}  // namespace
}  // namespace memtide::daemon

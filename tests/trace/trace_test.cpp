// Traces: the writer's rotation and bounds, the reader's handling of damaged lines, and replay
// through the policy.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memtide/report/json_text.hpp>
#include <memtide/report/snapshot_json.hpp>
#include <memtide/trace/replay.hpp>
#include <memtide/trace/trace.hpp>

#include "../support/sizes.hpp"

namespace memtide::trace {
using report::dump_json;
using report::from_json;
using report::to_json;

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using memtide::test_sizes::GiB;
using memtide::test_sizes::MiB;

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

TEST_F(TraceDir, OneFileStartsAnewAtItsBound) {
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

// memtided writes traces as root: a symlink at the path is never followed, and a file that is
// not its own plain file is never written.
TEST_F(TraceDir, NeverFollowsASymlinkOrWritesAFileItDoesNotOwn) {
  std::ofstream(path("precious")) << "keep me\n";
  chmod(path("precious").c_str(), 0644);
  fs::create_symlink(path("precious"), path("t.jsonl"));
  TraceWriter writer({path("t.jsonl"), 1 * MiB, 1});
  const auto s = writer.append(numbered(1));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("symbolic link"), std::string::npos) << s.error().message;
  // Also not on rotation: files == 1 once truncated whatever the path named.
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(writer.append(numbered(i)).ok());
  }
  std::ifstream in(path("precious"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "keep me\n");
  struct stat st {};
  ASSERT_EQ(stat(path("precious").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);

  // A second hard link to the trace file (planted in a shared directory) is refused too.
  fs::remove(path("t.jsonl"));
  ASSERT_EQ(link(path("precious").c_str(), path("t.jsonl").c_str()), 0);
  EXPECT_FALSE(TraceWriter({path("t.jsonl"), 1 * MiB, 1}).append(numbered(1)).ok());
  // A FIFO is refused without blocking.
  ASSERT_EQ(mkfifo(path("fifo").c_str(), 0600), 0);
  EXPECT_FALSE(TraceWriter({path("fifo"), 1 * MiB, 1}).append(numbered(1)).ok());
}

// A write cut short (disk full, here a file size limit) leaves a torn line; the next line starts
// on a line of its own instead of being glued to it, so only the torn one is lost.
TEST_F(TraceDir, ATornLineIsClosedOffByTheNextAppend) {
  const std::size_t line = to_json(numbered(1)).dump().size() + 1;
  TraceWriter writer({path("t.jsonl"), 1 * MiB, 1});
  ASSERT_TRUE(writer.append(numbered(1)).ok());
  // Room for one line and a half: the second append is torn.
  struct rlimit old {};
  getrlimit(RLIMIT_FSIZE, &old);
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = static_cast<rlim_t>(line + line / 2);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const auto torn = writer.append(numbered(2));
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  ASSERT_FALSE(torn.ok());
  ASSERT_TRUE(writer.append(numbered(3)).ok());
  ASSERT_TRUE(writer.append(numbered(4)).ok());
  EXPECT_EQ(writer.torn_lines(), 1u);
  std::vector<Error> errors;
  const auto back = read_all(path("t.jsonl"), &errors);
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[0], numbered(1));
  EXPECT_EQ(back[1], numbered(3));
  EXPECT_EQ(back[2], numbered(4));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 2);

  // A torn line left by a crash is closed off by the next writer too.
  std::ofstream(path("crashed.jsonl")) << to_json(numbered(1)).dump() << "\n{\"format\": 1, \"co";
  TraceWriter after({path("crashed.jsonl"), 1 * MiB, 1});
  ASSERT_TRUE(after.append(numbered(2)).ok());
  EXPECT_EQ(read_all(path("crashed.jsonl")).size(), 2u);
}

// Reading is bounded: a line nested thousands deep is skipped without recursing, and a file
// without newlines (/dev/zero) ends the read at the line limit instead of taking all memory.
TEST_F(TraceDir, ReaderBoundsNestingAndLineLength) {
  std::ofstream(path("deep.jsonl"))
      << std::string(200'000, '[') << std::string(200'000, ']') << "\n"
      << to_json(numbered(1)).dump() << "\n"
      << "{\"format\": 1, \"x\": \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
         "[[[[[[[[[[[[[[\"}\n";
  std::vector<Error> errors;
  const auto back = read_all(path("deep.jsonl"), &errors);
  ASSERT_EQ(back.size(), 1u);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].line, 1);
  EXPECT_NE(errors[0].message.find("nested deeper than"), std::string::npos);
  EXPECT_EQ(errors[1].line, 3);  // brackets inside a string do not count as nesting
  EXPECT_EQ(errors[1].message.find("nested deeper than"), std::string::npos);

  const auto zero = read_trace(
      "/dev/zero", [](Snapshot&&) {}, [](const Error&) {});
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.error().message.find("line longer than"), std::string::npos);
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
  all.balloon.floor = SizeOrRatio{1 * GiB};
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

// A recorded stretch without libvirt replays the daemon's own alert, as the daemon raised it:
// from the second tick in a row, resolved when libvirt is back.
TEST(Replay, ATraceWithoutLibvirtReplaysTheLibvirtDownAlert) {
  Replay replay(replay_config());
  std::vector<ReplayEvent> events;
  auto ticks = falling_then_steady();
  for (std::size_t i = 0; i < 6; ++i) {
    Snapshot s = ticks[40 + i];  // steady: no alert of the policy's own
    const bool down = i >= 1 && i <= 3;
    s.hypervisor_up = !down;
    s.hypervisor_error = down ? "cannot connect to qemu:///system" : "";
    if (down) {
      s.vms.clear();  // what the daemon records while libvirt is down
    }
    for (auto& e : replay.feed(s)) {
      if (e.kind != ReplayEvent::Kind::balloon) {
        events.push_back(std::move(e));
      }
    }
  }
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, ReplayEvent::Kind::alert_firing);
  EXPECT_EQ(events[0].subject, "libvirt-down");
  EXPECT_EQ(events[0].unix_ms, ticks[42].collected_at_unix_ms);
  EXPECT_EQ(events[1].kind, ReplayEvent::Kind::alert_resolved);
  EXPECT_EQ(events[1].unix_ms, ticks[44].collected_at_unix_ms);
  EXPECT_EQ(replay.summary().alerts.at("libvirt-down").fired, 1u);
}

}  // namespace
}  // namespace memtide::trace

// The policy's memory across a restart: the file form, its time shift, atomic saving, and the
// refusal of damaged, foreign, old and future files.
#include "state_file.hpp"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include "../support/sizes.hpp"

namespace memtide::daemon {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using memtide::test_sizes::GiB;
constexpr std::int64_t kUnix = 1'780'000'000'000;

config::Config one_class() {
  config::Config c;
  config::VmClass all;
  all.name = "default";
  all.match_name = "*";
  all.balloon.floor = SizeOrRatio{GiB};
  all.balloon.guest_free_ratio = 0.15;
  all.balloon.max_step = SizeOrRatio{512ULL << 20};
  c.classes = {all};
  c.host.reserve_bytes = 2 * GiB;
  return c;
}

// A guest short of memory on a host with room: it is grown, and the command is in flight.
Snapshot hungry(std::int64_t now_ms) {
  Snapshot s;
  s.monotonic_ms = now_ms;
  s.host.meminfo.total_bytes = 64 * GiB;
  s.host.meminfo.available_bytes = 30 * GiB;
  VmSample v;
  v.name = "web-1";
  v.uuid = "u1";
  v.state = VmState::running;
  v.stats_status = GuestStatsStatus::ok;
  v.current_bytes = 4 * GiB;
  v.max_bytes = 8 * GiB;
  v.guest.usable_bytes = 100ULL << 20;
  s.vms = {v};
  return s;
}

// The restart case: a command sent 3 s before the restart is still in flight (the balloon lags),
// so the restarted daemon must wait for it, as it would have without the restart, instead of
// sending it again at once.
TEST(StateFile, ARestartKeepsACommandInFlight) {
  const auto config = one_class();
  const std::int64_t t0 = 1'000'000;  // monotonic ms before the restart
  auto first = policy::decide(hungry(t0), {}, config, t0);
  ASSERT_EQ(first.plan.balloons.size(), 1u);
  const auto text = state_to_json(first.state, t0 + 3000, kUnix);

  // After a reboot the monotonic clock is small again; 2 s of wall-clock time went by.
  const std::int64_t t1 = 50'000;
  auto restored = state_from_json(text, t1, kUnix + 2000);
  ASSERT_TRUE(restored.ok()) << restored.error().message;
  const auto& vm = restored->vms.at("u1");
  EXPECT_EQ(vm.last_change_ms, t1 - 5000);  // the command was 5 s ago in all
  EXPECT_EQ(vm.last_direction, 1);
  EXPECT_EQ(vm.last_target_bytes, first.state.vms.at("u1").last_target_bytes);

  auto after = policy::decide(hungry(t1), std::move(*restored), config, t1);
  EXPECT_TRUE(after.plan.balloons.empty()) << after.plan.balloons[0].reason;
  // Without the state the same tick sends the command again: the burst a restart used to cause.
  EXPECT_EQ(policy::decide(hungry(t1), {}, config, t1).plan.balloons.size(), 1u);
}

// What memtided leaves behind when it dies after a shrink and the safety net (or virsh setmem)
// then grows the guest: the restarted daemon's first shrink is one max_step, not the old target.
TEST(StateFile, ARestartForgetsAShrinkTheBalloonLeft) {
  auto config = one_class();
  config.classes[0].balloon.max_step = SizeOrRatio{800ULL << 20};
  auto squeezed = [](std::int64_t now_ms, std::uint64_t current) {
    auto s = hungry(now_ms);
    s.host.meminfo.available_bytes = GiB;  // below the 2 GiB reserve: reclaim
    s.vms[0].current_bytes = current;
    s.vms[0].guest.usable_bytes = current - GiB;
    return s;
  };
  const std::int64_t t0 = 1'000'000;
  auto first = policy::decide(squeezed(t0, 3 * GiB + (256ULL << 20)), {}, config, t0);
  ASSERT_EQ(first.plan.balloons.size(), 1u);
  ASSERT_LT(first.plan.balloons[0].to_bytes, 3 * GiB);
  const auto text = state_to_json(first.state, t0 + 1000, kUnix);
  EXPECT_NE(text.find("\"last_from_bytes\""), std::string::npos) << text;

  auto restored = state_from_json(text, 5'000'000, kUnix + 600'000);
  ASSERT_TRUE(restored.ok()) << restored.error().message;
  const auto after =
      policy::decide(squeezed(5'000'000, 4 * GiB), std::move(*restored), config, 5'000'000);
  ASSERT_EQ(after.plan.balloons.size(), 1u);
  EXPECT_EQ(after.plan.balloons[0].to_bytes, 4 * GiB - (800ULL << 20))
      << after.plan.balloons[0].reason;
}

TEST(StateFile, AlertsKsmAndHistoryRoundTrip) {
  policy::PolicyState s;
  s.available_history = {{900'000, 10 * GiB}, {1'000'000, 9 * GiB}};
  policy::PolicyState::AlertMemory a;
  a.alert = {"guest-distress", "web-1", policy::Severity::critical, "web-1 at 2% usable", 990'000};
  a.clear_ticks = 1;
  s.alerts[{"guest-distress", "web-1"}] = a;
  s.ksm.stopped_for_cost_ms = 400'000;
  s.ksm.merging_since_full_scans = 12;
  s.last_not_ok_ms = 950'000;
  // What the policy learnt about a guest: its burst, its cache working set, its last change.
  policy::PolicyState::Vm vm;
  vm.last_change_ms = 980'000;
  vm.last_change_unix_ms = kUnix - 20'000;
  vm.last_direction = -1;
  vm.in_use_bytes = 3 * GiB;
  vm.burst_bytes = 400ULL << 20;
  vm.burst_ms = 970'000;
  vm.faults_before_shrink_per_second = 12.5;
  vm.cache_protected_until_ms = 1'400'000;
  vm.sampled_ms = 995'000;
  vm.faults_report_unix_s = kUnix / 1000 - 7;
  vm.in_use_report_unix_s = kUnix / 1000 - 12;
  vm.disk_read_bytes_total = 77ULL << 30;
  vm.disk_reads_at_ms = 996'000;
  vm.disk_reads_per_second = 200.0 * (1 << 20);
  vm.reads_before_shrink_per_second = 1.5 * (1 << 20);
  vm.last_shrink_ms = 980'000;
  vm.size_before_shrink_bytes = 6 * GiB;
  s.vms["u1"] = vm;
  const auto text = state_to_json(s, 1'000'000, kUnix);
  const auto back = state_from_json(text, 1'000'000, kUnix);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, s);  // no time went by: nothing moved
  // A file written before the guests' report times were kept: read, with them unset.
  auto old = nlohmann::json::parse(text);
  old["vms"]["u1"].erase("faults_report_unix_s");
  old["vms"]["u1"].erase("in_use_report_unix_s");
  // ... and before disk reads were: read, with none recorded before a shrink.
  for (const char* key :
       {"disk_read_bytes_total", "disk_reads_at_ms", "disk_reads_per_second",
        "reads_before_shrink_per_second", "last_shrink_ms", "size_before_shrink_bytes"}) {
    old["vms"]["u1"].erase(key);
  }
  const auto from_old = state_from_json(old.dump(), 1'000'000, kUnix);
  ASSERT_TRUE(from_old.ok()) << from_old.error().message;
  EXPECT_FALSE(from_old->vms.at("u1").faults_report_unix_s.has_value());
  EXPECT_FALSE(from_old->vms.at("u1").disk_read_bytes_total.has_value());
  EXPECT_EQ(from_old->vms.at("u1").reads_before_shrink_per_second, -1);
  EXPECT_EQ(from_old->vms.at("u1").last_shrink_ms, vm.last_change_ms);  // its last command
  EXPECT_EQ(from_old->vms.at("u1").in_use_bytes, vm.in_use_bytes);
  EXPECT_FALSE(from_old->vms.at("u1").size_before_shrink_bytes.has_value());
}

TEST(StateFile, DamagedForeignOldAndFutureFilesAreRefused) {
  const auto good = state_to_json({}, 1000, kUnix);
  EXPECT_TRUE(state_from_json(good, 1000, kUnix).ok());
  EXPECT_FALSE(state_from_json(good, 1000, kUnix + 2 * 3600 * 1000).ok());  // two hours old
  EXPECT_FALSE(state_from_json(good, 1000, kUnix - 60'000).ok());           // from the future
  EXPECT_FALSE(state_from_json(good.substr(0, good.size() / 2), 1000, kUnix).ok());
  EXPECT_FALSE(state_from_json("", 1000, kUnix).ok());
  EXPECT_FALSE(state_from_json(std::string(100'000, '['), 1000, kUnix).ok());
  std::string other = good;
  other.replace(other.find("\"format\":1"), 10, "\"format\":9");
  const auto r = state_from_json(other, 1000, kUnix);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("format 9"), std::string::npos) << r.error().message;
  // Found by the fuzzer: a float where a whole number belongs (nlohmann's conversion of 1e24 to
  // an integer is undefined behaviour, reported by UBSan).
  std::string floating = good;
  floating.replace(floating.find("\"saved_monotonic_ms\":1000"), 25, "\"saved_monotonic_ms\":1e24");
  EXPECT_FALSE(state_from_json(floating, 1000, kUnix).ok()) << floating;
  std::string typed = good;
  typed.replace(typed.find("\"alerts\":[]"), 11, "\"alerts\":[{\"name\":7}]");
  EXPECT_FALSE(state_from_json(typed, 1000, kUnix).ok());
}

// Wall-clock times are range-checked like the monotonic ones: INT64_MAX or INT64_MIN once reached
// the engine's sums, and a change time after the save kept a guest "settling" forever.
TEST(StateFile, WallClockTimesOutOfRangeAreRefused) {
  policy::PolicyState s;
  auto& vm = s.vms["u1"];
  vm.last_direction = -1;
  vm.last_change_ms = 990'000;
  vm.sampled_ms = 995'000;
  vm.last_change_unix_ms = kUnix - 10'000;
  vm.faults_report_unix_s = kUnix / 1000 - 5;
  vm.in_use_report_unix_s = kUnix / 1000 - 5;
  const auto good = nlohmann::json::parse(state_to_json(s, 1'000'000, kUnix));
  ASSERT_TRUE(state_from_json(good.dump(), 1'000'000, kUnix).ok());
  const auto with = [&](const char* key, nlohmann::json value) {
    auto j = good;
    j["vms"]["u1"][key] = std::move(value);
    return state_from_json(j.dump(), 1'000'000, kUnix);
  };
  for (const char* key : {"last_change_unix_ms", "faults_report_unix_s", "in_use_report_unix_s"}) {
    EXPECT_FALSE(with(key, INT64_MAX).ok()) << key;
    EXPECT_FALSE(with(key, INT64_MIN).ok()) << key;
    EXPECT_FALSE(with(key, -1).ok()) << key;
  }
  EXPECT_FALSE(with("last_change_unix_ms", kUnix + 3'600'000).ok());  // after the save
  EXPECT_FALSE(with("faults_report_unix_s", kUnix / 1000 + 3600).ok());
}

// The cap on a state file's size (read before it is parsed) holds the largest real one:
// kMaxStateVms VMs with long names, figures of every size, alerts and the longest history.
TEST(StateFile, TheLargestRealStateFitsUnderTheCap) {
  policy::PolicyState s;
  for (std::size_t i = 0; i < kMaxStateVms; ++i) {
    char uuid[40];
    std::snprintf(uuid, sizeof uuid, "%08zx-1234-1234-1234-123456789012", i);
    auto& vm = s.vms[uuid];
    vm.last_direction = -1;
    vm.last_change_ms = vm.sampled_ms = vm.burst_ms = vm.cache_protected_until_ms = 999'999;
    vm.last_target_bytes = vm.last_from_bytes = vm.in_use_bytes = 1ULL << 40;
    vm.swap_in_bytes_total = vm.major_faults_total = 1ULL << 50;
    vm.burst_bytes = 1ULL << 40;
    vm.last_change_unix_ms = kUnix;
    vm.faults_report_unix_s = vm.in_use_report_unix_s = kUnix / 1000;
    vm.faults_before_shrink_per_second = 12345.678901234;
    vm.disk_read_bytes_total = 1ULL << 50;
    vm.disk_reads_at_ms = 999'999;
    vm.disk_reads_per_second = vm.reads_before_shrink_per_second = 123456789.01234567;
    vm.last_shrink_ms = 999'999;
    const std::string name = "guest-" + std::string(57, 'x') + std::to_string(i);
    for (const char* alert : {"guest-distress", "guest-stale"}) {
      s.alerts[{alert, name}] = {{alert, name, policy::Severity::warning,
                                  name + " at its floor 2.4 GiB with 1 GiB usable (target 1.2 GiB) "
                                         "and faulting 1234 pages/s",
                                  999'999},
                                 0};
    }
  }
  for (std::int64_t t = 0; t < 36'000; ++t) {
    s.available_history.emplace_back(1'000'000 - 36'000 + t, 1ULL << 40);
  }
  const auto text = state_to_json(s, 1'000'000, kUnix);
  EXPECT_LT(text.size() + text.size() / 4, kMaxStateBytes);  // a quarter to spare
  const auto back = state_from_json(text, 1'000'000, kUnix);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->vms.size(), kMaxStateVms);
}

TEST(StateFile, SavedAtomicallyWithMode0600AndNeverThroughASymlink) {
  char tmpl[] = "/tmp/memtide-state-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string path = dir + "/policy-state.json";
  ASSERT_TRUE(save_state_file(path, "first\n").ok());
  ASSERT_TRUE(save_state_file(path, "second\n").ok());
  const auto text = read_state_file(path);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "second\n");
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  // A symlink planted as the temporary file is replaced, not followed.
  std::ofstream(dir + "/target") << "keep me\n";
  fs::create_symlink(dir + "/target", path + ".tmp");
  ASSERT_TRUE(save_state_file(path, "third\n").ok());
  std::ifstream in(dir + "/target");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "keep me");
  // Reading refuses a symlink and anything that is not a regular file.
  fs::create_symlink(path, dir + "/link");
  EXPECT_FALSE(read_state_file(dir + "/link").ok());
  EXPECT_FALSE(read_state_file(dir).ok());
  fs::remove_all(dir);
}

TEST(StateFile, AutoMeansTheServiceStateDirectory) {
  unsetenv("STATE_DIRECTORY");
  EXPECT_EQ(resolve_state_path("auto"), "");
  setenv("STATE_DIRECTORY", "/var/lib/memtide:/var/lib/other", 1);
  EXPECT_EQ(resolve_state_path("auto"), "/var/lib/memtide/policy-state.json");
  unsetenv("STATE_DIRECTORY");
  EXPECT_EQ(resolve_state_path(""), "");
  EXPECT_EQ(resolve_state_path("/srv/state.json"), "/srv/state.json");
}

}  // namespace
}  // namespace memtide::daemon

#include <functional>
#include <limits>
#include <random>

#include <gtest/gtest.h>

#include <memtide/report/snapshot_json.hpp>

namespace memtide::report {
namespace {

TEST(SnapshotJson, CarriesFiguresAndNullsForUnavailable) {
  Snapshot s;
  s.collected_at_unix_ms = 1'795'838'852'521;
  s.host.meminfo.total_bytes = 8ULL << 30;
  s.host.meminfo.available_bytes = 3ULL << 30;
  s.host.vmstat.swap_out_bytes_total = 4096;
  s.host.psi_memory = Pressure{PressureLine{0.25, 0.5, 0.75, 12.5}, std::nullopt};
  s.host.swaps = std::vector<SwapDevice>{{"/swap file", "file", 1024, 0, -2}};
  // psi_io, psi_cpu and ksm left unavailable.
  const auto j = to_json(s);
  EXPECT_EQ(j["collected_at"], "2026-11-28T04:07:32.521Z");
  EXPECT_EQ(j["host"]["meminfo"]["total_bytes"], 8ULL << 30);
  EXPECT_EQ(j["host"]["meminfo"]["available_bytes"], 3ULL << 30);
  EXPECT_TRUE(j["host"]["meminfo"]["hugetlb_bytes"].is_null());
  EXPECT_EQ(j["host"]["vmstat"]["swap_out_bytes_total"], 4096);
  EXPECT_EQ(j["host"]["pressure"]["memory"]["some"]["avg60_ratio"], 0.5);
  EXPECT_EQ(j["host"]["pressure"]["memory"]["some"]["total_seconds"], 12.5);
  EXPECT_TRUE(j["host"]["pressure"]["memory"]["full"].is_null());
  EXPECT_TRUE(j["host"]["pressure"]["io"].is_null());
  EXPECT_EQ(j["host"]["swaps"][0]["path"], "/swap file");
  EXPECT_EQ(j["host"]["swaps"][0]["priority"], -2);
  EXPECT_TRUE(j["ksm"].is_null());
  EXPECT_EQ(j["unavailable"], nlohmann::json({"pressure/io", "pressure/cpu", "ksm"}));
}

TEST(SnapshotJson, KsmFields) {
  Snapshot s;
  KsmSample k;
  k.run = 1;
  k.sharing_bytes = 30000ULL * 4096;
  k.general_profit_bytes = -8192;
  k.advisor_mode = "scan-time";
  s.ksm = k;
  const auto j = to_json(s);
  EXPECT_EQ(j["ksm"]["run"], 1);
  EXPECT_EQ(j["ksm"]["sharing_bytes"], 30000ULL * 4096);
  EXPECT_EQ(j["ksm"]["general_profit_bytes"], -8192);
  EXPECT_EQ(j["ksm"]["advisor_mode"], "scan-time");
  EXPECT_TRUE(j["ksm"]["smart_scan"].is_null());
}

}  // namespace
}  // namespace memtide::report

namespace memtide::report {
namespace {

// A snapshot with every optional set, awkward numbers and every enum value in use.
Snapshot full_snapshot(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto u64 = [&] { return rng() >> (rng() % 64); };
  auto ratio = [&] { return std::uniform_real_distribution<double>(0, 1)(rng); };
  Snapshot s;
  s.collected_at_unix_ms = 1'795'838'852'521 + static_cast<std::int64_t>(rng() % 100000);
  s.monotonic_ms = static_cast<std::int64_t>(rng() % 1'000'000'000);
  auto& m = s.host.meminfo;
  m.total_bytes = std::numeric_limits<std::uint64_t>::max();  // beyond int64
  m.available_bytes = u64();
  m.hugetlb_bytes = u64();
  m.anon_huge_pages_bytes = 0;
  s.host.vmstat.swap_out_bytes_total = u64();
  s.host.vmstat.oom_kills_total = u64();
  s.host.psi_memory = Pressure{PressureLine{ratio(), ratio(), ratio(), 1e9 * ratio()},
                               PressureLine{0.1, 0.2, 0.3, 0.30000000000000004}};
  s.host.psi_cpu = Pressure{PressureLine{ratio(), 0, 0, 12}, std::nullopt};
  s.host.swaps = std::vector<SwapDevice>{{"/swap file", "file", u64(), u64(), -2},
                                         {"/dev/sda2", "partition", 1, 0, 5}};
  KsmSample k;
  k.run = 1;
  k.merge_across_nodes = false;
  k.advisor_mode = "scan-time";
  k.general_profit_bytes = -static_cast<std::int64_t>(rng() % 100000);
  s.ksm = k;
  s.hypervisor_up = seed % 2 == 0;
  s.hypervisor_error = "unable to connect: \"quoted\"\n";
  const VmState states[] = {VmState::running, VmState::paused, VmState::shutoff, VmState::crashed,
                            VmState::other};
  const GuestStatsStatus statuses[] = {GuestStatsStatus::ok, GuestStatsStatus::disabled,
                                       GuestStatsStatus::no_driver, GuestStatsStatus::stale,
                                       GuestStatsStatus::no_balloon};
  for (int i = 0; i < 5; ++i) {
    VmSample vm;
    vm.name = "vm-" + std::to_string(i) + "-\u00e9";
    vm.uuid = "uuid-" + std::to_string(rng());
    vm.state = states[i];
    vm.stats_status = statuses[(i + seed) % 5];
    vm.max_bytes = u64();
    vm.current_bytes = u64();
    vm.stats_period_s = static_cast<std::uint32_t>(rng());
    vm.guest.usable_bytes = u64();
    vm.guest.last_update_unix_s = -static_cast<std::int64_t>(rng() % 1000);
    vm.metadata.floor = i % 2 == 0 ? SizeOrRatio{ratio()} : SizeOrRatio{u64()};
    vm.metadata.balloon_enabled = i % 2 == 0;
    vm.metadata.class_name = "db";
    vm.metadata_errors = {"floor: bad", "shares: bad"};
    vm.sharing_allowed = i % 3 != 0;
    if (i % 3 == 1) {
      vm.memory_pins = {MemoryPin::hugepages, MemoryPin::launch_security};
    }
    if (i % 2 == 0) {
      vm.virtio_mem = {VirtioMemDevice{"virtiomem0", 0, u64(), u64(), u64(), u64(), u64()},
                       VirtioMemDevice{"ua-€", std::nullopt, u64(), u64(), u64(), u64(), u64()}};
    }
    if (i % 2 == 1) {
      vm.process = QemuProcess{static_cast<int>(rng() % 100000), u64(), std::nullopt,
                               ProcessKsmStat{u64(), u64(), std::nullopt, -5}};
    }
    s.vms.push_back(vm);
  }
  return s;
}

TEST(SnapshotJson, RoundTripIsExact) {
  for (std::uint64_t seed = 0; seed < 50; ++seed) {
    const Snapshot s = full_snapshot(seed);
    // Through text, as a trace stores it.
    const auto parsed = from_json(nlohmann::json::parse(to_json(s).dump()));
    ASSERT_TRUE(parsed.ok()) << parsed.error().to_string();
    EXPECT_EQ(*parsed, s) << "seed " << seed;
  }
  const auto empty = from_json(nlohmann::json::parse(to_json(Snapshot{}).dump()));
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, Snapshot{});
}

TEST(SnapshotJson, ErrorsNameTheKeyPath) {
  const auto base = nlohmann::json::parse(to_json(full_snapshot(1)).dump());
  const std::pair<std::function<void(nlohmann::json&)>, std::string> cases[] = {
      {[](auto& j) { j["vms"][3]["guest"]["usable_bytes"] = "lots"; },
       "vms[3].guest.usable_bytes: expected a whole number"},
      {[](auto& j) { j["host"]["meminfo"].erase("free_bytes"); },
       "host.meminfo.free_bytes: missing"},
      {[](auto& j) { j["vms"][0]["state"] = "sleeping"; },
       "vms[0].state: unknown value \"sleeping\""},
      {[](auto& j) { j["vms"][0]["stats_period_seconds"] = -1; },
       "vms[0].stats_period_seconds: must not be negative"},
      {[](auto& j) { j["vms"][0]["stats_period_seconds"] = 1ULL << 40; },
       "vms[0].stats_period_seconds: out of range"},
      {[](auto& j) {
         j["vms"][0]["metadata"]["floor"] = {{"percent", 3}};
       },
       "vms[0].metadata.floor: expected {\"bytes\": N} or {\"ratio\": R}"},
      {[](auto& j) { j["hypervisor"] = true; }, "hypervisor: expected an object"},
      {[](auto& j) { j["host"]["pressure"]["memory"]["some"]["avg10_ratio"] = nullptr; },
       "host.pressure.memory.some.avg10_ratio: expected a number"},
      {[](auto& j) {
         j["vms"][1]["memory_pins"] = {"hugepages", "gold"};
       },
       "vms[1].memory_pins[1]: unknown value \"gold\""},
      {[](auto& j) { j["format"] = 2; }, "format: expected 1, got 2"},
      {[](auto& j) { j.erase("format"); }, "format: expected 1, got nothing"},
  };
  for (const auto& [mutate, message] : cases) {
    auto j = base;
    mutate(j);
    const auto r = from_json(j);
    ASSERT_FALSE(r.ok()) << message;
    EXPECT_EQ(r.error().message, message);
  }
  EXPECT_FALSE(from_json(nlohmann::json::array()).ok());
}

// Traces recorded before a list was added to the format read as if it were empty.
TEST(SnapshotJson, ListsAddedLaterMayBeAbsent) {
  auto j = nlohmann::json::parse(to_json(full_snapshot(1)).dump());
  ASSERT_FALSE(j["vms"][1]["memory_pins"].empty());
  j["vms"][1].erase("memory_pins");
  const auto r = from_json(j);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_TRUE(r->vms[1].memory_pins.empty());
}

}  // namespace
}  // namespace memtide::report

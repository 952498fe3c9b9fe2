#include "snapshot_json.hpp"

#include <gtest/gtest.h>

namespace memtide::daemon {
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
}  // namespace memtide::daemon

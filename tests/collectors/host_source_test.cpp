// HostSource and KsmReader on checked-in fixture trees and on this machine's own /proc and /sys.
// Expected figures are read off the fixture files by hand (see tests/fixtures/hosts/*).
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <memtide/collectors/host_source.hpp>

#include "../support/sizes.hpp"

namespace memtide::collectors {
namespace {

using memtide::test_sizes::KiB;
const std::string kHosts = std::string(MEMTIDE_FIXTURES) + "/hosts/";

HostRoots roots(const std::string& tree) {
  return {kHosts + tree + "/proc", kHosts + tree + "/sys"};
}

TEST(HostSourceFixture, CurrentKernelHasEverySource) {
  const auto r = HostSource(roots("debian12-6.18"), 4096).read();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->meminfo.total_bytes, 24684096 * KiB);
  EXPECT_EQ(r->meminfo.available_bytes, 24285304 * KiB);
  EXPECT_EQ(r->meminfo.swap_total_bytes, 262140 * KiB);
  EXPECT_EQ(r->vmstat.page_faults_total, 4713603u);
  EXPECT_EQ(r->vmstat.major_faults_total, 944u);
  EXPECT_EQ(r->vmstat.workingset_refault_bytes_total, 34787u * 4096);
  ASSERT_TRUE(r->psi_cpu.has_value());
  EXPECT_DOUBLE_EQ(r->psi_cpu->some.avg10_ratio, 0.0007);
  EXPECT_DOUBLE_EQ(r->psi_cpu->some.total_seconds, 5.203978);
  ASSERT_TRUE(r->psi_io.has_value());
  ASSERT_TRUE(r->psi_io->full.has_value());
  EXPECT_DOUBLE_EQ(r->psi_io->full->total_seconds, 3.895362);
  ASSERT_TRUE(r->psi_memory.has_value());
  ASSERT_TRUE(r->swaps.has_value());
  ASSERT_EQ(r->swaps->size(), 1u);
  EXPECT_EQ((*r->swaps)[0].path, "/tmp/memtide-swapfile");
  EXPECT_EQ((*r->swaps)[0].size_bytes, 262140 * KiB);
  EXPECT_EQ((*r->swaps)[0].priority, -2);
  // 12 partly mapped 2 MiB pages and 3 of 64 KiB.
  EXPECT_EQ(r->thp_partially_mapped_bytes, 12 * 2048 * KiB + 3 * 64 * KiB);
}

TEST(KsmReaderFixture, CurrentKernelHasAdvisorAndProfitFiles) {
  const auto r = KsmReader(kHosts + "debian12-6.18/sys", 4096).read();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_TRUE(r->has_value());
  const KsmSample& k = **r;
  EXPECT_EQ(k.run, 0u);
  EXPECT_EQ(k.pages_to_scan, 100u);
  EXPECT_EQ(k.sleep_ms, 20u);
  EXPECT_EQ(k.merge_across_nodes, true);
  EXPECT_EQ(k.use_zero_pages, false);
  EXPECT_EQ(k.smart_scan, true);
  EXPECT_EQ(k.max_page_sharing, 256u);
  EXPECT_EQ(k.stable_node_chains_prune_ms, 2000u);
  EXPECT_EQ(k.advisor_mode, "none");
  EXPECT_EQ(k.advisor_max_cpu_percent, 70u);
  EXPECT_EQ(k.advisor_min_pages_to_scan, 500u);
  EXPECT_EQ(k.advisor_max_pages_to_scan, 30000u);
  EXPECT_EQ(k.advisor_target_scan_time_seconds, 200u);
  EXPECT_EQ(k.general_profit_bytes, 0);
  EXPECT_EQ(k.zero_pages_bytes, 0u);
  EXPECT_EQ(k.scanned_bytes_total, 0u);
  EXPECT_EQ(k.skipped_bytes_total, 0u);
}

TEST(HostSourceFixture, OldKernelReportsMissingSourcesAsUnavailable) {
  const auto r = HostSource(roots("old-kernel-4.14"), 4096).read();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->meminfo.total_bytes, 8054844 * KiB);
  EXPECT_EQ(r->meminfo.anon_huge_pages_bytes, 2048000 * KiB);
  EXPECT_FALSE(r->meminfo.hugetlb_bytes.has_value());
  EXPECT_FALSE(r->psi_memory.has_value());
  EXPECT_FALSE(r->psi_io.has_value());
  EXPECT_FALSE(r->psi_cpu.has_value());
  EXPECT_FALSE(r->thp_partially_mapped_bytes.has_value());  // the counter came in 6.12
  EXPECT_EQ(r->vmstat.swap_out_bytes_total, 262144u * 4096);
  EXPECT_EQ(r->vmstat.workingset_refault_bytes_total, 5000u * 4096);  // unsplit counter
  EXPECT_EQ(r->vmstat.allocstall_total, 10u);                         // 0 + 2 + 7 + 1
  EXPECT_EQ(r->vmstat.oom_kills_total, 3u);
  ASSERT_TRUE(r->swaps.has_value());
  ASSERT_EQ(r->swaps->size(), 2u);
  EXPECT_EQ((*r->swaps)[1].path, "/var/swap file");
}

TEST(KsmReaderFixture, OldKernelLacksNewerFiles) {
  const auto r = KsmReader(kHosts + "old-kernel-4.14/sys", 4096).read();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_TRUE(r->has_value());
  const KsmSample& k = **r;
  EXPECT_EQ(k.run, 1u);
  EXPECT_EQ(k.pages_to_scan, 1250u);
  EXPECT_EQ(k.shared_bytes, 1500u * 4096);
  EXPECT_EQ(k.sharing_bytes, 30000u * 4096);
  EXPECT_EQ(k.unshared_bytes, 80000u * 4096);
  EXPECT_EQ(k.volatile_bytes, 2000u * 4096);
  EXPECT_EQ(k.full_scans_total, 42u);
  EXPECT_FALSE(k.advisor_mode.has_value());
  EXPECT_FALSE(k.advisor_max_cpu_percent.has_value());
  EXPECT_FALSE(k.smart_scan.has_value());
  EXPECT_FALSE(k.zero_pages_bytes.has_value());
  EXPECT_FALSE(k.general_profit_bytes.has_value());
  EXPECT_FALSE(k.scanned_bytes_total.has_value());
}

TEST(KsmReaderFixture, KernelWithoutKsmIsUnavailableNotAnError) {
  const auto r = KsmReader(kHosts + "old-kernel-4.14/no-such-sysfs", 4096).read();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_FALSE(r->has_value());
}

TEST(HostSourceFixture, MissingMeminfoIsAnError) {
  const auto r = HostSource({"/nonexistent/proc", "/nonexistent/sys"}, 4096).read();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().file, "/nonexistent/proc/meminfo");
  EXPECT_EQ(r.error().sys_errno, ENOENT);
}

struct MalformedTree {
  const char* tree;
  const char* file;  // relative to the tree
  int line;
  const char* part;
};

class MalformedTrees : public testing::TestWithParam<MalformedTree> {};

TEST_P(MalformedTrees, ErrorNamesFileAndLine) {
  const auto& c = GetParam();
  const auto host = HostSource(roots(c.tree), 4096).read();
  Error error;
  if (!host.ok()) {
    error = host.error();
  } else {
    const auto ksm = KsmReader(kHosts + c.tree + "/sys", 4096).read();
    ASSERT_FALSE(ksm.ok()) << "tree " << c.tree << " parsed without error";
    error = ksm.error();
  }
  EXPECT_EQ(error.file, kHosts + c.tree + "/" + c.file);
  EXPECT_EQ(error.line, c.line) << error.to_string();
  EXPECT_NE(error.message.find(c.part), std::string::npos) << error.to_string();
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, MalformedTrees,
    testing::Values(
        MalformedTree{"malformed-truncated", "proc/meminfo", 3, "expected a value in kB"},
        MalformedTree{"malformed-nonnumeric", "proc/vmstat", 97, "not a non-negative integer"},
        MalformedTree{"malformed-missing-field", "proc/meminfo", 0, "MemAvailable is missing"},
        MalformedTree{"malformed-huge", "proc/meminfo", 1, "value too large"},
        MalformedTree{"malformed-ksm-garbage", "sys/kernel/mm/ksm/pages_sharing", 1,
                      "not a non-negative"}),
    [](const auto& p) {
      std::string name = p.param.tree;
      for (auto& ch : name) {
        if (ch == '-') {
          ch = '_';
        }
      }
      return name;
    });

// This machine's own /proc, checked against an independent source: sysinfo(2).
TEST(HostSourceLive, MemTotalMatchesSysinfo) {
  const auto r = HostSource(HostRoots{}).read();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  struct sysinfo si {};
  ASSERT_EQ(sysinfo(&si), 0);
  const std::uint64_t total = static_cast<std::uint64_t>(si.totalram) * si.mem_unit;
  EXPECT_EQ(r->meminfo.total_bytes, total);
  EXPECT_EQ(r->meminfo.swap_total_bytes, static_cast<std::uint64_t>(si.totalswap) * si.mem_unit);
  EXPECT_LE(r->meminfo.available_bytes, r->meminfo.total_bytes);
  EXPECT_GT(r->vmstat.page_faults_total, 0u);
}

TEST(KsmReaderLive, ReadsThisKernelsKsmWhenPresent) {
  std::ifstream run("/sys/kernel/mm/ksm/run");
  if (!run) {
    GTEST_SKIP() << "no KSM on this kernel";
  }
  std::uint64_t expected_run = 99;
  run >> expected_run;
  const auto r = KsmReader().read();
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->run, expected_run);
}

TEST(KsmdCpuLive, FindsTheKsmdThreadAndItsCpuOnlyGrows) {
  std::ifstream run("/sys/kernel/mm/ksm/run");
  if (!run) {
    GTEST_SKIP() << "no KSM on this kernel";
  }
  KsmdCpu cpu;
  const auto first = cpu.read();
  ASSERT_TRUE(first.has_value()) << "a kernel with /sys/kernel/mm/ksm runs a ksmd thread";
  const auto second = cpu.read();  // the remembered pid
  ASSERT_TRUE(second.has_value());
  EXPECT_GE(*second, *first);
  EXPECT_FALSE(KsmdCpu("/nonexistent").read().has_value());
}

}  // namespace
}  // namespace memtide::collectors

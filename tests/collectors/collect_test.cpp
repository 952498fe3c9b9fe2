// The collection pass: what it tells the hypervisor about the QEMU processes' files from the host
// figures it has just read (ProcessReadHints), on a copy of a captured host tree.
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include <gtest/gtest.h>
#include <stdlib.h>

#include <memtide/collectors/collect.hpp>
#include <memtide/collectors/qemu_process.hpp>

#include "../support/fake_hypervisor.hpp"

namespace memtide::collectors {
namespace {

using namespace std::chrono_literals;

class CollectorHints : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/memtide-collect-XXXXXX";
    root_ = mkdtemp(tmpl);
    ASSERT_EQ(
        std::system(("cp -r " MEMTIDE_TESTS "/fixtures/hosts/debian12-6.18/proc " + root_ +
                     "/ && cp -r " MEMTIDE_TESTS "/fixtures/hosts/debian12-6.18/sys " + root_ + "/")
                        .c_str()),
        0);
    auto fake = std::make_unique<testing::FakeHypervisor>();
    fake_ = fake.get();
    collector_ =
        std::make_unique<Collector>(HostRoots{root_ + "/proc", root_ + "/sys"},
                                    std::make_unique<HypervisorWorker>(std::move(fake)), 1s);
  }
  void TearDown() override { std::system(("rm -rf " + root_).c_str()); }

  // Replaces the number on the line of `key` ("key value" or "Key:   value kB").
  void set(const std::string& file, const std::string& key, const std::string& value) {
    std::ifstream in(root_ + "/" + file);
    std::string text;
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(key + " ", 0) == 0 || line.rfind(key + ":", 0) == 0) {
        const auto start = line.find_first_of("0123456789", key.size());
        const auto end = line.find_first_not_of("0123456789", start);
        line.replace(start, end == std::string::npos ? std::string::npos : end - start, value);
      }
      text += line + "\n";
    }
    in.close();
    std::ofstream(root_ + "/" + file) << text;
  }
  ProcessReadHints collect() {
    EXPECT_TRUE(collector_->collect().ok());
    return fake_->hints_seen.back();
  }

  std::string root_;
  testing::FakeHypervisor* fake_ = nullptr;  // owned by the collector's worker
  std::unique_ptr<Collector> collector_;
};

TEST_F(CollectorHints, SwapEpochMovesOnlyWithSwapTrafficOrUse) {
  const auto first = collect();  // the fixture: 256 MiB of swap, all free, no traffic
  EXPECT_FALSE(first.swap_in_use);
  ASSERT_TRUE(first.swap_epoch.has_value());
  EXPECT_EQ(collect().swap_epoch, first.swap_epoch);

  set("proc/meminfo", "SwapFree", "262000");
  const auto used = collect();
  EXPECT_TRUE(used.swap_in_use);
  EXPECT_NE(used.swap_epoch, first.swap_epoch);
  EXPECT_EQ(collect().swap_epoch, used.swap_epoch);

  set("proc/vmstat", "pswpout", "35");
  const auto out = collect();
  EXPECT_NE(out.swap_epoch, used.swap_epoch);
  set("proc/vmstat", "pswpin", "3");
  EXPECT_NE(collect().swap_epoch, out.swap_epoch);
}

TEST_F(CollectorHints, KsmEpochMovesOnlyWhenKsmsStateOrCountsChange) {
  const auto first = collect();  // the fixture: run=0
  ASSERT_TRUE(first.ksm_epoch.has_value());
  EXPECT_EQ(collect().ksm_epoch, first.ksm_epoch);

  std::ofstream(root_ + "/sys/kernel/mm/ksm/pages_sharing") << "12\n";
  const auto changed = collect();
  EXPECT_NE(changed.ksm_epoch, first.ksm_epoch);
  EXPECT_EQ(collect().ksm_epoch, changed.ksm_epoch);

  std::ofstream(root_ + "/sys/kernel/mm/ksm/run") << "1\n";
  const auto running = collect();
  EXPECT_NE(running.ksm_epoch, changed.ksm_epoch);
  // ksmd running with nothing new merged: no process's merged pages moved.
  EXPECT_EQ(collect().ksm_epoch, running.ksm_epoch);
  // A full scan ended: every process's rmap items are read again.
  std::ofstream(root_ + "/sys/kernel/mm/ksm/full_scans") << "1000\n";
  EXPECT_NE(collect().ksm_epoch, running.ksm_epoch);
}

// KSM holding nothing (the fixture: never run, general_profit 0) tells the reader every
// process's ksm_stat without reading it, with the fields this kernel prints; anything merged,
// or a kernel without general_profit, and the files are read.
TEST_F(CollectorHints, AnAllZeroKsmStatOnlyWhileKsmHoldsNothing) {
  ProcessKsmStat zero;
  zero.zero_pages_bytes = 0;
  zero.merging_bytes = 0;
  zero.profit_bytes = 0;
  EXPECT_EQ(collect().ksm_all_zero, zero);

  std::ofstream(root_ + "/sys/kernel/mm/ksm/general_profit") << "-4096\n";  // rmap items
  EXPECT_FALSE(collect().ksm_all_zero.has_value());
  std::ofstream(root_ + "/sys/kernel/mm/ksm/general_profit") << "0\n";
  std::ofstream(root_ + "/sys/kernel/mm/ksm/ksm_zero_pages") << "3\n";
  EXPECT_FALSE(collect().ksm_all_zero.has_value());
  std::ofstream(root_ + "/sys/kernel/mm/ksm/ksm_zero_pages") << "0\n";
  std::ofstream(root_ + "/sys/kernel/mm/ksm/pages_sharing") << "12\n";
  EXPECT_FALSE(collect().ksm_all_zero.has_value());
  std::ofstream(root_ + "/sys/kernel/mm/ksm/pages_sharing") << "0\n";
  std::ofstream(root_ + "/sys/kernel/mm/ksm/pages_shared") << "1\n";
  EXPECT_FALSE(collect().ksm_all_zero.has_value());
  std::ofstream(root_ + "/sys/kernel/mm/ksm/pages_shared") << "0\n";
  EXPECT_EQ(collect().ksm_all_zero, zero);

  // A kernel before 6.10 (no ksm_zero_pages): no such field either.
  ASSERT_EQ(std::remove((root_ + "/sys/kernel/mm/ksm/ksm_zero_pages").c_str()), 0);
  zero.zero_pages_bytes.reset();
  EXPECT_EQ(collect().ksm_all_zero, zero);
  // Before 6.5 (no general_profit) rmap items cannot be known to be none.
  ASSERT_EQ(std::remove((root_ + "/sys/kernel/mm/ksm/general_profit").c_str()), 0);
  EXPECT_FALSE(collect().ksm_all_zero.has_value());
}

// On this machine's own kernel: the reading taken for every process while KSM holds nothing
// has the fields this kernel prints, as /proc/self/ksm_stat shows them (this test process has
// never been offered to KSM, so its figures are all zero whatever the host's KSM holds).
TEST(CollectorHintsLive, TheEmptyKsmStatIsWhatThisKernelPrints) {
  const auto host = KsmReader().read();
  ASSERT_TRUE(host.ok()) << host.error().to_string();
  if (!host->has_value() || !empty_process_ksm_stat(**host)) {
    GTEST_SKIP() << "this kernel has no KSM, or no general_profit";
  }
  std::ifstream in("/proc/self/ksm_stat");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(text.empty()) << "a kernel with general_profit has /proc/PID/ksm_stat";
  const auto real = parse_process_ksm_stat(text, 4096, "/proc/self/ksm_stat");
  ASSERT_TRUE(real.ok()) << real.error().to_string();
  EXPECT_EQ(*empty_process_ksm_stat(**host), *real) << text;
}

}  // namespace
}  // namespace memtide::collectors

#include <cstdlib>
#include <fstream>
#include <vector>

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memtide/collectors/qemu_process.hpp>

namespace memtide::collectors {
namespace {

TEST(ProcessStatus, ReadsRssAndSwap) {
  const auto r = parse_process_status(
      "Name:\tqemu-system-x86\nVmPeak:\t 9999 kB\nVmRSS:\t  524288 kB\nVmSwap:\t    2048 kB\n",
      "status");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->rss_bytes, 524288ULL * 1024);
  EXPECT_EQ(r->swap_bytes, 2048ULL * 1024);
}

TEST(ProcessStatus, KernelThreadHasNeither) {
  const auto r = parse_process_status("Name:\tkthreadd\nState:\tS (sleeping)\n", "status");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->rss_bytes.has_value());
}

TEST(ProcessStatus, Malformed) {
  const auto r = parse_process_status("Name:\tq\nVmRSS:\t12x kB\n", "st");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().line, 2);
  EXPECT_FALSE(parse_process_status("VmSwap:\t12\n", "st").ok());
}

TEST(ProcessKsmStat, ReadsPagesAsBytesAndSignedProfit) {
  const auto r = parse_process_ksm_stat(
      "ksm_rmap_items 100\nksm_zero_pages 3\nksm_merging_pages 40\nksm_process_profit -1234\n"
      "ksm_merge_any: no\nksm_mergeable: yes\n",
      4096, "ksm_stat");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->rmap_items, 100u);
  EXPECT_EQ(r->zero_pages_bytes, 3u * 4096);
  EXPECT_EQ(r->merging_bytes, 40u * 4096);
  EXPECT_EQ(r->profit_bytes, -1234);
}

TEST(ProcessKsmStat, OlderKernelWithFewerFields) {
  const auto r = parse_process_ksm_stat("ksm_rmap_items 7\n", 4096, "ksm_stat");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rmap_items, 7u);
  EXPECT_FALSE(r->merging_bytes.has_value());
}

TEST(ProcessKsmStat, Malformed) {
  EXPECT_FALSE(parse_process_ksm_stat("", 4096, "k").ok());
  EXPECT_FALSE(parse_process_ksm_stat("ksm_rmap_items x\n", 4096, "k").ok());
  EXPECT_FALSE(
      parse_process_ksm_stat("ksm_rmap_items 1\nksm_process_profit 1.5\n", 4096, "k").ok());
}

// A procfs tree built on disk: two QEMU processes (one with an upper-case UUID) and an
// unrelated one.
class FakeProcfs : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/memtide-procfs-XXXXXX";
    root_ = mkdtemp(tmpl);
    add(101,
        {"qemu-system-x86_64", "-name", "guest=web-1", "-uuid",
         "6695eb01-f6a4-8304-79aa-97f2502e193f", "-m", "size=1048576k"},
        "Name:\tqemu\nVmRSS:\t 1000 kB\nVmSwap:\t 24 kB\n");
    add(202, {"qemu-system-x86_64", "-uuid", "AABBCCDD-0000-1111-2222-333344445555"},
        "Name:\tqemu\nVmRSS:\t 10 kB\n");
    add(303, {"bash", "-c", "echo -uuid"}, "Name:\tbash\n");
    mkdir((root_ + "/self").c_str(), 0755);  // non-numeric entries are skipped
  }
  void TearDown() override { std::system(("rm -rf " + root_).c_str()); }
  // Writes /PID/cmdline as the kernel does: each argument followed by a NUL byte.
  void add(int pid, const std::vector<std::string>& args, const std::string& status) {
    const auto dir = root_ + "/" + std::to_string(pid);
    mkdir(dir.c_str(), 0755);
    std::ofstream cmdline(dir + "/cmdline", std::ios::binary);
    for (const auto& a : args) {
      cmdline << a << '\0';
    }
    std::ofstream(dir + "/status") << status;
  }
  std::string root_;
};

TEST_F(FakeProcfs, FindsQemuProcessesByUuidArgument) {
  const auto found = find_qemu_processes(root_);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found.at("6695eb01-f6a4-8304-79aa-97f2502e193f"), 101);
  EXPECT_EQ(found.at("aabbccdd-0000-1111-2222-333344445555"), 202);
  EXPECT_TRUE(process_runs_guest(root_, 202, "AABBCCDD-0000-1111-2222-333344445555"));
  EXPECT_FALSE(process_runs_guest(root_, 101, "aabbccdd-0000-1111-2222-333344445555"));
  EXPECT_FALSE(process_runs_guest(root_, 999, "aabbccdd-0000-1111-2222-333344445555"));
}

TEST_F(FakeProcfs, ReadsProcessFigures) {
  const auto p = read_qemu_process(root_, 101, 4096);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->pid, 101);
  EXPECT_EQ(p->rss_bytes, 1000u * 1024);
  EXPECT_EQ(p->swap_bytes, 24u * 1024);
  EXPECT_FALSE(p->ksm.has_value());  // no ksm_stat file
  EXPECT_FALSE(read_qemu_process(root_, 999, 4096).has_value());
}

TEST(QemuProcessLive, ReadsOwnProcess) {
  const auto p = read_qemu_process("/proc", getpid(), 4096);
  ASSERT_TRUE(p.has_value());
  EXPECT_GT(p->rss_bytes.value_or(0), 0u);
}

}  // namespace
}  // namespace memtide::collectors

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <vector>

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

// A procfs tree built on disk: two QEMU processes (one with an upper-case UUID), an unrelated
// one, and two that claim the first guest without being its QEMU.
class FakeProcfs : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/memtide-procfs-XXXXXX";
    root_ = mkdtemp(tmpl);
    mkdir((root_ + "/bin").c_str(), 0755);
    qemu_ = root_ + "/bin/qemu-system-x86_64";
    std::ofstream(qemu_) << "#!/bin/true\n";
    chmod(qemu_.c_str(), 0755);
    add(101,
        {"qemu-system-x86_64", "-name", "guest=web-1", "-uuid",
         "6695eb01-f6a4-8304-79aa-97f2502e193f", "-m", "size=1048576k"},
        "Name:\tqemu\nUid:\t64055\t64055\t64055\t64055\nVmRSS:\t 1000 kB\nVmSwap:\t 24 kB\n",
        qemu_);
    add(202, {"qemu-system-x86_64", "-uuid", "AABBCCDD-0000-1111-2222-333344445555"},
        "Name:\tqemu\nUid:\t0\t0\t0\t0\nVmRSS:\t 10 kB\n", qemu_);
    add(303, {"bash", "-c", "echo -uuid"}, "Name:\tbash\n", "/bin/bash");
    // Another user's process with the first guest's UUID on its command line.
    add(404, {"qemu-system-x86_64", "-uuid", "6695eb01-f6a4-8304-79aa-97f2502e193f"},
        "Name:\tqemu\nUid:\t1000\t1000\t1000\t1000\n", qemu_);
    std::ofstream(root_ + "/101/statm") << "300000 250 100 1 0 200 0\n";
    std::ofstream(root_ + "/202/statm") << "3000 3 1 1 0 2 0\n";
    mkdir((root_ + "/self").c_str(), 0755);  // non-numeric entries are skipped
  }
  void TearDown() override { std::system(("rm -rf " + root_).c_str()); }
  // Writes /PID/cmdline as the kernel does (each argument followed by a NUL byte), /PID/status,
  // and /PID/exe as a link to `exe`.
  void add(int pid, const std::vector<std::string>& args, const std::string& status,
           const std::string& exe) {
    const auto dir = root_ + "/" + std::to_string(pid);
    mkdir(dir.c_str(), 0755);
    std::ofstream cmdline(dir + "/cmdline", std::ios::binary);
    for (const auto& a : args) {
      cmdline << a << '\0';
    }
    std::ofstream(dir + "/status") << status;
    symlink(exe.c_str(), (dir + "/exe").c_str());
  }
  std::string root_;
  std::string qemu_;
};

TEST_F(FakeProcfs, FindsEveryProcessClaimingAGuest) {
  const auto found = find_qemu_candidates(root_);
  ASSERT_EQ(found.size(), 2u);
  const auto& web = found.at("6695eb01-f6a4-8304-79aa-97f2502e193f");
  ASSERT_EQ(web.size(), 2u);
  EXPECT_EQ(web[0].pid, 101);
  EXPECT_EQ(web[0].uids, (std::vector<std::uint32_t>{64055, 64055, 64055, 64055}));
  EXPECT_EQ(web[0].exe, qemu_);
  EXPECT_EQ(web[0].exe_owner, geteuid());
  EXPECT_EQ(web[0].swap_bytes, 24u * 1024);  // from the same read of status
  EXPECT_EQ(web[1].pid, 404);
  EXPECT_EQ(web[1].swap_bytes, std::nullopt);  // its status has no VmSwap
  EXPECT_EQ(found.at("aabbccdd-0000-1111-2222-333344445555").at(0).pid, 202);
  if (geteuid() == 0) {  // the binary is root's only when the test runs as root
    EXPECT_EQ(untrusted_reason(web[0], {0, 64055}), "");
    EXPECT_NE(untrusted_reason(web[1], {0, 64055}).find("runs as uid 1000"), std::string::npos);
  }
}

// Only a process running as a user QEMU runs as, from a root-owned QEMU binary writable by root
// alone, is taken for a guest's QEMU (any user could otherwise make memtided read their memory
// as a VM's and steer the KSM estimate).
TEST(QemuTrust, OwnerAndExecutableMustBeQemus) {
  QemuCandidate c;
  c.pid = 7;
  c.uids = {64055, 64055, 64055, 64055};
  c.exe = "/usr/bin/qemu-system-x86_64";
  c.exe_owner = 0;
  c.exe_mode = S_IFREG | 0755;
  const std::vector<std::uint32_t> qemu_uids{0, 64055};
  EXPECT_EQ(untrusted_reason(c, qemu_uids), "");
  auto with = [&](auto change) {
    QemuCandidate d = c;
    change(d);
    return untrusted_reason(d, qemu_uids);
  };
  EXPECT_NE(with([](QemuCandidate& d) { d.uids = {1000, 1000, 1000, 1000}; }), "");
  EXPECT_NE(with([](QemuCandidate& d) { d.uids = {64055, 1000, 64055, 64055}; }), "");
  EXPECT_NE(with([](QemuCandidate& d) { d.uids.clear(); }), "");
  EXPECT_NE(with([](QemuCandidate& d) {
              d.exe = "/home/mallory/qemu-system-x86_64";
              d.exe_owner = 1000;
            }),
            "");
  EXPECT_NE(with([](QemuCandidate& d) { d.exe_mode = S_IFREG | 0777; }), "");
  EXPECT_NE(with([](QemuCandidate& d) { d.exe = "/usr/bin/python3"; }), "");
  EXPECT_NE(with([](QemuCandidate& d) { d.exe_owner.reset(); }), "");
  // A binary replaced by a package upgrade while the guest runs is still QEMU.
  EXPECT_EQ(with([](QemuCandidate& d) { d.exe = "/usr/bin/qemu-system-x86_64 (deleted)"; }), "");
  EXPECT_EQ(with([](QemuCandidate& d) { d.exe = "/usr/libexec/qemu-kvm"; }), "");
}

// A real process: one that only claims a guest on its command line (argv[0] and "-uuid") but
// runs another binary is found and refused.
TEST(QemuTrust, ALiveImpostorIsRefused) {
  // A UUID of this test process's own, so that another run of the suite on the same host (its
  // impostor is on the same /proc) is never counted here.
  char uuid[40];
  std::snprintf(uuid, sizeof uuid, "12345678-0000-0000-0000-%012d", static_cast<int>(getpid()));
  const pid_t child = fork();
  if (child == 0) {
    // A process group of its own, killed whole below: the shell's sleep would otherwise outlive
    // it, holding the test's output open for 30 s.
    setpgid(0, 0);
    // The shell keeps its command line (the "; true" stops it from exec'ing sleep).
    execl("/bin/sh", "qemu-system-x86_64", "-c", "sleep 30; true", "qemu-system-x86_64", "-uuid",
          uuid, static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(child, child);  // either side may run first
  // The shell's own claim. While it forks sleep, the fork carries the same command line until
  // it execs: a second claim for a moment (seen on a loaded host), an impostor just the same.
  std::optional<QemuCandidate> claim;
  for (int i = 0; i < 100 && !claim; ++i) {
    usleep(10'000);
    const auto found = find_qemu_candidates("/proc");
    if (const auto it = found.find(uuid); it != found.end()) {
      for (const auto& c : it->second) {
        if (c.pid == child) {
          claim = c;
        }
      }
    }
  }
  kill(-child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(claim.has_value());
  EXPECT_NE(untrusted_reason(*claim, default_qemu_uids()).find("not a QEMU binary"),
            std::string::npos)
      << untrusted_reason(*claim, default_qemu_uids());
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

TEST(ProcessStatm, ResidentPagesInBytes) {
  EXPECT_EQ(parse_process_statm("300000 250 100 1 0 200 0\n", 4096, "statm").value(), 250u * 4096);
  EXPECT_EQ(parse_process_statm("1 0 0 0 0 0 0", 4096, "statm").value(), 0u);
  EXPECT_FALSE(parse_process_statm("", 4096, "statm").ok());
  EXPECT_FALSE(parse_process_statm("300000\n", 4096, "statm").ok());
  EXPECT_FALSE(parse_process_statm("300000 -5 1 1 0 2 0\n", 4096, "statm").ok());
  const auto overflow = parse_process_statm("1 18446744073709551615 0 0 0 0 0\n", 4096, "statm");
  ASSERT_FALSE(overflow.ok());
  EXPECT_NE(overflow.error().to_string().find("statm:1"), std::string::npos)
      << overflow.error().to_string();
}

// VmSwap and ksm_stat are read again only when the hints' epochs move; the kept values are
// returned otherwise, and no swap in use means none, whatever status said before.
TEST_F(FakeProcfs, ReaderRereadsOnlyWhatTheHostSaysMayHaveChanged) {
  const auto dir = root_ + "/101";
  std::ofstream(dir + "/ksm_stat") << "ksm_rmap_items 10\nksm_merging_pages 5\n";
  QemuProcessReader reader(root_, 101, 4096);
  ProcessReadHints hints{true, 1, 1, {}};
  auto p = reader.read(hints);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->rss_bytes, 250u * 4096);
  EXPECT_EQ(p->swap_bytes, 24u * 1024);
  ASSERT_TRUE(p->ksm.has_value());
  EXPECT_EQ(p->ksm->merging_bytes, 5u * 4096);

  // The files change, the epochs do not: the resident set is read, the rest kept.
  std::ofstream(dir + "/statm") << "300000 500 100 1 0 200 0\n";
  std::ofstream(dir + "/status") << "Name:\tqemu\nVmRSS:\t 2000 kB\nVmSwap:\t 48 kB\n";
  std::ofstream(dir + "/ksm_stat") << "ksm_rmap_items 10\nksm_merging_pages 9\n";
  p = reader.read(hints);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->rss_bytes, 500u * 4096);
  EXPECT_EQ(p->swap_bytes, 24u * 1024);
  EXPECT_EQ(p->ksm->merging_bytes, 5u * 4096);

  hints.swap_epoch = 2;
  p = reader.read(hints);
  EXPECT_EQ(p->swap_bytes, 48u * 1024);
  EXPECT_EQ(p->ksm->merging_bytes, 5u * 4096);
  hints.ksm_epoch = 2;
  p = reader.read(hints);
  EXPECT_EQ(p->ksm->merging_bytes, 9u * 4096);

  hints.swap_in_use = false;
  p = reader.read(hints);
  EXPECT_EQ(p->swap_bytes, 0u);
  // Swap in use again at the same epoch: read afresh, not the 0 kept while there was none.
  hints.swap_in_use = true;
  p = reader.read(hints);
  EXPECT_EQ(p->swap_bytes, 48u * 1024);

  // Without epochs everything is read every time.
  std::ofstream(dir + "/status") << "Name:\tqemu\nVmRSS:\t 2000 kB\nVmSwap:\t 96 kB\n";
  p = reader.read(ProcessReadHints{});
  EXPECT_EQ(p->swap_bytes, 96u * 1024);
}

// A reader made from what the search found starts from it: the first read takes the VmRSS and
// VmSwap the search read from status and the statm it opened (the process whose uids and
// executable were checked), opening nothing by path; later reads read statm in place. Without a
// swap epoch there is nothing to keep VmSwap by.
TEST_F(FakeProcfs, ReaderStartsFromWhatTheSearchRead) {
  const auto found = find_qemu_candidates(root_);
  const auto& web = found.at("6695eb01-f6a4-8304-79aa-97f2502e193f").at(0);
  ASSERT_NE(web.statm, nullptr);
  ASSERT_GE(web.statm->get(), 0);
  EXPECT_EQ(web.rss_bytes, 1000u * 1024);
  // status changes after the search read it, and statm is no longer there by its path: the
  // reader keeps what the search saw and reads statm through the search's descriptor.
  std::ofstream(root_ + "/101/status") << "Name:\tqemu\nVmRSS:\t 2000 kB\nVmSwap:\t 48 kB\n";
  std::ofstream(root_ + "/101/statm.new") << "300000 500 100 1 0 200 0\n";
  ASSERT_EQ(std::rename((root_ + "/101/statm.new").c_str(), (root_ + "/101/statm").c_str()), 0);
  std::ofstream(root_ + "/101/statm.new") << "300000 700 100 1 0 200 0\n";
  const ProcessReadHints hints{true, 1, 1, {}};
  QemuProcessReader reader(root_, web, 4096, hints);
  auto p = reader.read(hints);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->swap_bytes, 24u * 1024);
  EXPECT_EQ(p->rss_bytes, 1000u * 1024);  // status as the search read it, not statm
  p = reader.read(hints);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->rss_bytes, 250u * 4096);  // the file the search opened, not the one now there
  // The next swap epoch reads status itself.
  p = reader.read(ProcessReadHints{true, 2, 1, {}});
  EXPECT_EQ(p->swap_bytes, 48u * 1024);

  QemuProcessReader without_epoch(root_, web, 4096, ProcessReadHints{});
  EXPECT_EQ(without_epoch.read(hints)->swap_bytes, 48u * 1024);
}

// While KSM holds nothing host-wide the hints carry what every ksm_stat then says, and the
// reader takes it rather than the file (here made to say otherwise, to show it is not read);
// once KSM holds something again the file is read.
TEST_F(FakeProcfs, ReaderTakesAnAllZeroKsmStatFromTheHints) {
  std::ofstream(root_ + "/101/ksm_stat") << "ksm_rmap_items 10\nksm_merging_pages 5\n";
  QemuProcessReader reader(root_, 101, 4096);
  ProcessReadHints hints{true, 1, 1, {}};
  ProcessKsmStat zero;
  zero.merging_bytes = 0;
  zero.profit_bytes = 0;
  hints.ksm_all_zero = zero;
  auto p = reader.read(hints);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->ksm, zero);
  hints.ksm_all_zero.reset();
  hints.ksm_epoch = 2;
  p = reader.read(hints);
  ASSERT_TRUE(p.has_value() && p->ksm.has_value());
  EXPECT_EQ(p->ksm->rmap_items, 10u);
  EXPECT_EQ(p->ksm->merging_bytes, 5u * 4096);
}

// A real process read in place tick after tick: what it touches shows, and once it has exited
// the reader says so (its open statm fails) rather than reading whatever reuses the PID.
TEST(QemuProcessLive, ReaderFollowsAProcessUntilItExits) {
  int ready[2];
  int go[2];
  ASSERT_EQ(pipe(ready), 0);
  ASSERT_EQ(pipe(go), 0);
  const pid_t child = fork();
  if (child == 0) {
    char c = 0;
    (void)!write(ready[1], "r", 1);
    (void)!read(go[0], &c, 1);  // wait, then touch 64 MiB
    std::vector<char> touched(std::size_t{64} << 20);
    for (std::size_t i = 0; i < touched.size(); i += 4096) {
      touched[i] = 1;
    }
    (void)!write(ready[1], "t", 1);
    (void)!read(go[0], &c, 1);
    _exit(touched[4096]);
  }
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  QemuProcessReader reader("/proc", child, static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)));
  const auto before = reader.read(ProcessReadHints{false, 0, 0, {}});
  ASSERT_TRUE(before.has_value());
  ASSERT_TRUE(write(go[1], "g", 1) == 1 && read(ready[0], &c, 1) == 1);
  const auto after = reader.read(ProcessReadHints{false, 0, 0, {}});
  ASSERT_TRUE(after.has_value());
  EXPECT_GE(after->rss_bytes.value_or(0),
            before->rss_bytes.value_or(0) + (std::uint64_t{60} << 20));
  EXPECT_EQ(after->swap_bytes, 0u);  // no swap in use: not read
  ASSERT_EQ(write(go[1], "g", 1), 1);
  waitpid(child, nullptr, 0);
  EXPECT_FALSE(reader.read(ProcessReadHints{}).has_value());
}

TEST(QemuProcessLive, ReadsOwnProcess) {
  const auto p = read_qemu_process("/proc", getpid(), 4096);
  ASSERT_TRUE(p.has_value());
  EXPECT_GT(p->rss_bytes.value_or(0), 0u);
}

}  // namespace
}  // namespace memtide::collectors

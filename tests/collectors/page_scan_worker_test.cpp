// The daemon's page-scan thread on a child process with known memory: per-VM figures and the
// estimate across VMs, refused VMs never read, the read-rate budget, and a stop that does not
// wait for a pass.
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memtide/collectors/page_scan_worker.hpp>

namespace memtide::collectors {
namespace {

using namespace std::chrono_literals;

// The child's memory, rewritten with distinct contents on SIGUSR1.
unsigned char* child_memory = nullptr;
std::size_t child_bytes = 0;

void rewrite_distinct(int /*signal*/) {
  std::uint64_t x = 88172645463325252ULL;
  for (std::size_t i = 0; i + 8 <= child_bytes; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(child_memory + i, &x, 8);
  }
}

// A child holding `pages` mergeable pages: the first tenth zero, the rest in groups of 10
// identical pages. SIGUSR1 makes every page distinct (rewrite()).
class Child {
 public:
  explicit Child(std::size_t pages) {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    int ready[2];
    EXPECT_EQ(pipe(ready), 0);
    pid_ = fork();
    if (pid_ == 0) {
      auto* mem = static_cast<unsigned char*>(
          mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      madvise(mem, pages * page, MADV_MERGEABLE);
      child_memory = mem;
      child_bytes = pages * page;
      signal(SIGUSR1, rewrite_distinct);
      for (std::size_t p = 0; p < pages; ++p) {
        std::memset(mem + p * page, p < pages / 10 ? 0 : static_cast<int>(1 + p / 10 % 250), page);
      }
      (void)!write(ready[1], "x", 1);
      for (;;) {
        pause();
      }
    }
    char c = 0;
    EXPECT_EQ(read(ready[0], &c, 1), 1);
    close(ready[0]);
    close(ready[1]);
  }
  ~Child() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  // Makes every page distinct, and waits for the child to have done it.
  void rewrite() const {
    kill(pid_, SIGUSR1);
    std::this_thread::sleep_for(200ms);
  }

 private:
  pid_t pid_ = -1;
};

config::KsmScanSection fast() {
  config::KsmScanSection s;
  s.cpu_ratio = 1.0;
  s.read_bytes_per_second = 1ULL << 40;
  s.interval = 10s;
  return s;
}

// Polls `check` on the view until it holds, or 10 s; returns the last view.
template <typename Check>
PageScanWorker::View wait_view(const PageScanWorker& w, Check check) {
  PageScanWorker::View v;
  for (int i = 0; i < 200; ++i) {
    v = w.view();
    if (check(v)) {
      break;
    }
    std::this_thread::sleep_for(50ms);
  }
  return v;
}

// Polls until `uuid` has left "pending", or 10 s.
PageScanWorker::View wait_scanned(const PageScanWorker& w, const std::string& uuid) {
  return wait_view(w, [&uuid](const PageScanWorker::View& v) {
    return v.vms.count(uuid) != 0 && v.vms.at(uuid).status != "pending";
  });
}

// Polls until the estimate covers `vms` VMs (it is computed after a pass's figures appear, and
// after the VMs change), or 10 s.
PageScanWorker::View wait_estimate(const PageScanWorker& w, std::uint64_t vms) {
  return wait_view(
      w, [vms](const PageScanWorker::View& v) { return v.estimate && v.estimate->vms == vms; });
}

TEST(PageScanWorker, FiguresPerVmAndTheEstimateAcrossThem) {
  const std::uint64_t page = collectors::system_page_size();
  Child a(1000);
  PageScanWorker worker("/proc", fast());
  worker.update({{"u-a", "a", a.pid(), 1000 * page, "", {}},
                 {"u-x", "x", 1, 1ULL << 30, "opted-out", {}},
                 {"u-y", "y", 1, 1ULL << 30, "scan-disabled", {}}},
                fast());
  ASSERT_EQ(wait_scanned(worker, "u-a").vms.at("u-a").status, "scanned");
  const auto v = wait_estimate(worker, 1);
  ASSERT_EQ(v.vms.at("u-a").status, "scanned") << v.vms.at("u-a").error;
  const auto& f = v.vms.at("u-a");
  EXPECT_EQ(f.resident_bytes, 1000 * page);
  EXPECT_EQ(f.zero_bytes, 100 * page);
  // 100 zero pages and 90 groups of 10: 1 + 90 distinct contents.
  EXPECT_EQ(f.duplicate_bytes, (1000 - 91) * page);
  EXPECT_EQ(v.vms.at("u-x").status, "opted-out");
  EXPECT_EQ(v.vms.at("u-y").status, "scan-disabled");
  ASSERT_TRUE(v.estimate.has_value());
  EXPECT_EQ(v.estimate->vms, 1u) << "refused VMs are not in the estimate";
  EXPECT_EQ(v.estimate->savings_bytes, (1000 - 91) * page);
  EXPECT_EQ(v.estimate->passes_total, 1u);
  EXPECT_GT(v.estimate->cpu_seconds_total, 0.0);

  // A second VM with the same contents: every one of its pages merges with the first's.
  Child b(1000);
  worker.update(
      {{"u-a", "a", a.pid(), 1000 * page, "", {}}, {"u-b", "b", b.pid(), 1000 * page, "", {}}},
      fast());
  ASSERT_EQ(wait_scanned(worker, "u-b").vms.at("u-b").status, "scanned");
  const auto both = wait_estimate(worker, 2);
  ASSERT_TRUE(both.estimate.has_value());
  EXPECT_EQ(both.estimate->vms, 2u);
  EXPECT_EQ(both.estimate->resident_bytes, 2000 * page);
  EXPECT_EQ(both.estimate->savings_bytes, (2000 - 91) * page);
  // A VM that is gone takes its figures with it.
  worker.update({{"u-b", "b", b.pid(), 1000 * page, "", {}}}, fast());
  EXPECT_EQ(worker.view().vms.count("u-a"), 0u);
  const auto one = wait_estimate(worker, 1);
  ASSERT_TRUE(one.estimate.has_value());
  EXPECT_EQ(one.estimate->vms, 1u);
}

TEST(PageScanWorker, AFailedPassIsReported) {
  PageScanWorker worker("/proc", fast());
  worker.update(
      {{"u-z", "z", 999'999'999, 1ULL << 30, "", {}}, {"u-n", "n", 0, 1ULL << 30, "", {}}}, fast());
  const auto v = wait_scanned(worker, "u-n");
  EXPECT_EQ(v.vms.at("u-n").status, "failed");
  EXPECT_NE(v.vms.at("u-n").error.find("no QEMU process"), std::string::npos);
  const auto z = wait_scanned(worker, "u-z");
  EXPECT_EQ(z.vms.at("u-z").status, "failed");
  EXPECT_FALSE(z.estimate.has_value());
}

TEST(PageScanWorker, ReadRateBudgetAndAStopThatDoesNotWaitForThePass) {
  const std::uint64_t page = collectors::system_page_size();
  Child a(2048);  // 8 MiB
  auto slow = fast();
  slow.read_bytes_per_second = 1ULL << 20;  // 1 MiB/s: a pass takes about 8 s
  const auto started = std::chrono::steady_clock::now();
  {
    PageScanWorker worker("/proc", slow);
    worker.update({{"u-a", "a", a.pid(), 2048 * page, "", {}}}, slow);
    std::this_thread::sleep_for(2500ms);
    EXPECT_EQ(worker.view().vms.at("u-a").status, "pending") << "the budget slows the pass";
  }  // destroyed mid-pass
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, 6s) << "stopping abandons the pass at its next batch";
}

// A process with a sparse mergeable mapping of 4 TiB and almost nothing resident: walking it
// costs CPU though hardly a page is read. The pass keeps to its CPU budget (3 % of a core), and
// stopping the worker mid-walk takes well under a second (it once walked unpaced, a whole core
// for ~50 s, and held a stop or a reload for as long).
TEST(PageScanWorker, ASparseMappingKeepsTheBudgetAndAStopIsPrompt) {
  const std::uint64_t size = 4ULL << 40;
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  if (child == 0) {
    auto* mem = static_cast<char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE,
                                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    if (mem == MAP_FAILED || madvise(mem, size, MADV_MERGEABLE) != 0) {
      _exit(1);
    }
    for (std::uint64_t off = 0; off < size; off += size / 16) {
      mem[off] = 1;
    }
    (void)!write(ready[1], "x", 1);
    for (;;) {
      pause();
    }
  }
  close(ready[1]);  // so a child that died is seen as the end of the pipe
  char c = 0;
  const ssize_t got = read(ready[0], &c, 1);
  close(ready[0]);
  if (got != 1) {
    waitpid(child, nullptr, 0);
    // ThreadSanitizer refuses a mapping this large (it keeps shadow memory for it).
    GTEST_SKIP() << "cannot map 4 TiB of address space here";
  }
  config::KsmScanSection budget;  // the defaults: 3 % of a core
  rusage before{};
  getrusage(RUSAGE_SELF, &before);
  auto worker = std::make_unique<PageScanWorker>("/proc", budget);
  worker->update({{"u-s", "s", child, size, "", {}}}, budget);
  std::this_thread::sleep_for(2s);
  const auto stopping = std::chrono::steady_clock::now();
  worker.reset();
  const auto stop_took = std::chrono::steady_clock::now() - stopping;
  rusage after{};
  getrusage(RUSAGE_SELF, &after);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  const double cpu = seconds(after.ru_utime) + seconds(after.ru_stime) - seconds(before.ru_utime) -
                     seconds(before.ru_stime);
  EXPECT_LT(stop_took, 1s);
  // 3 % of 2 s is 0.06 s; the bound leaves room for a slow machine, far from a whole core.
  EXPECT_LT(cpu, 0.5) << "CPU seconds used by the scanner in 2 s of wall time";
}

// Settings for the schedule tests: passes as fast as the child allows while converging, never
// again once converged (unless woken), probes every 200 ms.
config::KsmScanSection adaptive() {
  auto s = fast();
  s.interval = 100ms;
  s.converged_interval = 1h;
  s.probe_interval = 200ms;
  return s;
}

// A VM whose figures hold still converges and is then only probed; when its content changes,
// a probe finds it and the next pass brings the estimate to the new content.
TEST(PageScanWorker, ConvergedVmsAreOnlyProbedUntilTheirContentChanges) {
  const std::uint64_t page = collectors::system_page_size();
  Child a(2000);
  PageScanWorker worker("/proc", adaptive());
  worker.update({{"u-a", "a", a.pid(), 2000 * page, "", {}}}, adaptive());
  auto v = wait_view(worker,
                     [](const auto& seen) { return seen.vms.at("u-a").schedule == "converged"; });
  ASSERT_EQ(v.vms.at("u-a").schedule, "converged") << v.vms.at("u-a").schedule_reason;
  ASSERT_TRUE(v.estimate.has_value());
  EXPECT_EQ(v.estimate->passes_total, kConvergePasses);
  EXPECT_EQ(v.vms.at("u-a").duplicate_bytes, (2000 - 181) * page);

  // Converged: a second goes by with probes and no pass.
  std::this_thread::sleep_for(1s);
  v = worker.view();
  EXPECT_EQ(v.estimate->passes_total, kConvergePasses) << "a converged VM was passed over again";
  EXPECT_GE(v.estimate->probes_total, 2u);
  EXPECT_EQ(v.vms.at("u-a").schedule, "converged");

  // Every page distinct now: a probe wakes a pass, whose figures show it.
  a.rewrite();
  v = wait_view(worker, [](const auto& seen) { return seen.vms.at("u-a").duplicate_bytes == 0; });
  EXPECT_EQ(v.vms.at("u-a").duplicate_bytes, 0u) << v.vms.at("u-a").schedule_reason;
  EXPECT_EQ(v.wakes_total.at("content"), 1u);
  EXPECT_NE(v.vms.at("u-a").schedule, "converged") << "one pass of new figures is not converged";
}

// The signals the tick passes in wake a converged VM's pass at once, each counted by its
// reason; a host near its reserve passes converged VMs over at the fast interval.
TEST(PageScanWorker, SignalsWakeAConvergedVm) {
  const std::uint64_t page = collectors::system_page_size();
  Child a(500);
  constexpr std::uint64_t kMiB = 1ULL << 20;
  ScanTarget t{"u-a", "a", a.pid(), 500 * page, "", {100 * kMiB, 1024 * kMiB, 0}};
  PageScanWorker worker("/proc", adaptive());
  const auto converged = [](const auto& seen) {
    return seen.vms.at("u-a").schedule == "converged";
  };
  worker.update({t}, adaptive());
  ASSERT_EQ(wait_view(worker, converged).vms.at("u-a").schedule, "converged");

  // Resident memory moves by far more than 10 % of what the passes read.
  const auto passes = worker.view().estimate->passes_total;
  t.signals.rss_bytes += 64 * kMiB;
  worker.update({t}, adaptive());
  auto v =
      wait_view(worker, [&](const auto& seen) { return seen.estimate->passes_total > passes; });
  EXPECT_EQ(v.wakes_total.at("resident"), 1u);
  EXPECT_GT(v.estimate->passes_total, passes);
  ASSERT_EQ(wait_view(worker, converged).vms.at("u-a").schedule, "converged");

  t.signals.size_bytes -= 512 * kMiB;  // the balloon took half
  worker.update({t}, adaptive());
  v = wait_view(worker, [](const auto& seen) { return seen.wakes_total.count("resized") != 0; });
  EXPECT_EQ(v.wakes_total.at("resized"), 1u);
  ASSERT_EQ(wait_view(worker, converged).vms.at("u-a").schedule, "converged");

  // The host near its reserve: rescanning at the fast interval, said so.
  const auto before = worker.view().estimate->passes_total;
  worker.update({t}, adaptive(), true);
  v = wait_view(worker,
                [&](const auto& seen) { return seen.estimate->passes_total >= before + 2; });
  EXPECT_GE(v.estimate->passes_total, before + 2);
  EXPECT_EQ(v.vms.at("u-a").schedule, "rescanning");
  EXPECT_NE(v.vms.at("u-a").schedule_reason.find("reserve"), std::string::npos);

  // A restarted process: the same VM, another pid, passed over at once and converging anew.
  worker.update({t}, adaptive());
  ASSERT_EQ(wait_view(worker, converged).vms.at("u-a").schedule, "converged");
  Child again(500);
  t.pid = again.pid();
  worker.update({t}, adaptive());
  v = wait_view(worker, [](const auto& seen) { return seen.wakes_total.count("restarted") != 0; });
  EXPECT_EQ(v.wakes_total.at("restarted"), 1u);
  ASSERT_EQ(wait_view(worker, converged).vms.at("u-a").schedule, "converged");
}

}  // namespace
}  // namespace memtide::collectors

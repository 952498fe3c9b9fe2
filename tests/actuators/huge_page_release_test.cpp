// Splitting the transparent huge pages a balloon left partly mapped, on a real process: a child
// maps huge-page-backed memory and gives back three 4 KiB pages of every four, as a balloon in
// a guest does; the huge pages stay whole (and their freed pages allocated) until memtide's
// release splits them. Needs root (process_madvise on another process needs CAP_SYS_NICE, and
// /proc/kpageflags needs CAP_SYS_ADMIN) and transparent huge pages; skipped otherwise.
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memtide/actuators/huge_page_release.hpp>

#include "../support/sizes.hpp"

namespace memtide::actuators {
namespace {

using memtide::test_sizes::MiB;
constexpr std::uint64_t kBytes = 64 * MiB;
constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kLead = (2048 + 64) * MiB;  // untouched memory before the used part

// A child holding kBytes of huge-page-backed memory with 3 of every 4 pages given back.
class PartlyMappedChild {
 public:
  PartlyMappedChild() {
    int ready[2];
    if (pipe(ready) != 0) {
      return;
    }
    pid_ = fork();
    if (pid_ == 0) {
      close(ready[0]);
      // One mapping, marked mergeable as QEMU marks guest RAM (what the release picks), whose
      // used part lies beyond its first 2 GiB: one process_madvise call advises at most about
      // 2 GiB, so a release that did not split large guests into several calls misses it.
      // The untouched part costs no memory.
      const std::uint64_t span = kLead + kBytes + 2 * MiB;
      void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      madvise(raw, span, MADV_MERGEABLE);
      auto* p = reinterpret_cast<char*>(
          (reinterpret_cast<std::uintptr_t>(raw) + kLead + 2 * MiB - 1) & ~(2 * MiB - 1));
      madvise(p, kBytes, MADV_HUGEPAGE);
      std::memset(p, 1, kBytes);
      for (std::uint64_t off = 0; off < kBytes; off += kPage) {
        if ((off / kPage) % 4 != 0) {
          madvise(p + off, kPage, MADV_DONTNEED);
        }
      }
      const auto start = reinterpret_cast<std::uintptr_t>(p);
      (void)!write(ready[1], &start, sizeof start);
      pause();
      _exit(0);
    }
    close(ready[1]);
    ok_ = pid_ > 0 && read(ready[0], &start_, sizeof start_) == sizeof start_;
    close(ready[0]);
  }
  ~PartlyMappedChild() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool ok() const { return ok_; }
  int pid() const { return pid_; }

  // Mapped pages of the region that belong to a transparent huge page (KPF_THP, bit 22 of
  // /proc/kpageflags), from the child's page map; -1 when the page map cannot be read.
  long huge_backed_pages() const {
    const int map = open(("/proc/" + std::to_string(pid_) + "/pagemap").c_str(), O_RDONLY);
    const int flags = open("/proc/kpageflags", O_RDONLY);
    long count = -1;
    if (map >= 0 && flags >= 0) {
      count = 0;
      for (std::uint64_t off = 0; off < kBytes; off += kPage) {
        std::uint64_t entry = 0;
        const auto at = static_cast<off_t>((start_ + off) / kPage * 8);
        if (pread(map, &entry, 8, at) != 8 || (entry >> 63) == 0) {
          continue;  // not present
        }
        const std::uint64_t pfn = entry & ((1ULL << 55) - 1);
        std::uint64_t f = 0;
        if (pfn != 0 && pread(flags, &f, 8, static_cast<off_t>(pfn * 8)) == 8 &&
            ((f >> 22) & 1) != 0) {
          ++count;
        }
      }
    }
    if (map >= 0) {
      close(map);
    }
    if (flags >= 0) {
      close(flags);
    }
    return count;
  }

 private:
  pid_t pid_ = -1;
  std::uintptr_t start_ = 0;
  bool ok_ = false;
};

VmSample vm_of(int pid, std::uint64_t balloon) {
  VmSample vm;
  vm.name = "guest";
  vm.uuid = "uuid-guest";
  vm.state = VmState::running;
  vm.current_bytes = balloon;
  vm.max_bytes = 1024 * MiB;
  vm.process = QemuProcess{};
  vm.process->pid = pid;
  return vm;
}

TEST(HugePageRelease, SplitsThePartlyMappedHugePagesOfAShrunkGuest) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "needs root";
  }
  PartlyMappedChild child;
  ASSERT_TRUE(child.ok());
  const long before = child.huge_backed_pages();
  if (before <= 0) {
    GTEST_SKIP() << "no transparent huge pages for the child (THP off, or none free)";
  }
  Snapshot s;
  s.host.thp_partially_mapped_bytes = kBytes;
  s.vms = {vm_of(child.pid(), 1024 * MiB)};
  HugePageRelease release;
  EXPECT_TRUE(release.run(s, 0).empty()) << "first sight: nothing shrank yet";
  s.vms[0].current_bytes = 1024 * MiB - 4 * MiB;
  EXPECT_TRUE(release.run(s, 1000).empty()) << "4 MiB is below the least shrink";
  EXPECT_EQ(child.huge_backed_pages(), before);

  s.vms[0].current_bytes = 900 * MiB;
  const auto released = release.run(s, 2000);
  ASSERT_EQ(released.size(), 1u);
  EXPECT_EQ(released[0].error, "");
  EXPECT_GE(released[0].advised_bytes, kLead + kBytes);
  EXPECT_LT(child.huge_backed_pages(), before / 8)
      << before << " pages were in huge pages; the release split them";

  // Not again within the interval, nor without a host report of partly mapped pages.
  s.vms[0].current_bytes = 800 * MiB;
  EXPECT_TRUE(release.run(s, 2000 + kHugePageReleaseIntervalMs - 1).empty());
  s.host.thp_partially_mapped_bytes = 0;
  EXPECT_TRUE(release.run(s, 2000 + kHugePageReleaseIntervalMs).empty());
  s.host.thp_partially_mapped_bytes = kBytes;
  EXPECT_EQ(release.run(s, 2000 + kHugePageReleaseIntervalMs).size(), 1u);
}

TEST(HugePageRelease, AProcessThatIsGoneIsAnErrorNotACrash) {
  pid_t pid = fork();
  if (pid == 0) {
    _exit(0);
  }
  waitpid(pid, nullptr, 0);
  const auto r = advise_cold(pid, {{0x10000000, 0x10200000}});
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(advise_cold(0, {}).ok());
  Snapshot s;
  s.host.thp_partially_mapped_bytes = kBytes;
  s.vms = {vm_of(pid, 1024 * MiB)};
  HugePageRelease release;
  release.run(s, 0);
  s.vms[0].current_bytes = 512 * MiB;
  const auto released = release.run(s, 1000);
  ASSERT_EQ(released.size(), 1u);
  EXPECT_NE(released[0].error, "");
}

}  // namespace
}  // namespace memtide::actuators

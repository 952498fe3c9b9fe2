// The page scanner on a child process with known memory contents: exact counts of resident,
// zero and duplicate pages, and of pages changed between passes.
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <set>
#include <string>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memtide/collectors/page_scanner.hpp>
#include <memtide/core/text.hpp>

namespace memtide::collectors {
namespace {

TEST(Smaps, MergeableAndPrivateAnonymousRegions) {
  const char* smaps =
      "7f0000000000-7f0000004000 rw-p 00000000 00:00 0 \n"
      "Size:                 16 kB\n"
      "VmFlags: rd wr mr mw me ac sd mg \n"
      "7f0000010000-7f0000012000 rw-p 00000000 00:00 0                          [heap]\n"
      "Size:                  8 kB\n"
      "VmFlags: rd wr mr mw me ac sd \n"
      "7f0000020000-7f0000021000 r--p 00000000 08:01 1234                       /usr/lib/libc.so\n"
      "VmFlags: rd mr mw me sd \n"
      "7f0000030000-7f0000031000 rw-s 00000000 00:05 77                         /dev/zero\n"
      "VmFlags: rd wr sh mr mw me ms sd \n"
      "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n"
      "VmFlags: ex \n";
  const auto mg = parse_smaps_regions(smaps, CandidateMemory::mergeable, "smaps");
  ASSERT_TRUE(mg.ok()) << mg.error().to_string();
  ASSERT_EQ(mg->size(), 1u);
  EXPECT_EQ((*mg)[0], (MemoryRegion{0x7f0000000000, 0x7f0000004000}));
  const auto anon = parse_smaps_regions(smaps, CandidateMemory::private_anonymous, "smaps");
  ASSERT_TRUE(anon.ok());
  ASSERT_EQ(anon->size(), 2u);  // the mergeable one and the heap; not files, shared or vsyscall
  EXPECT_EQ((*anon)[1], (MemoryRegion{0x7f0000010000, 0x7f0000012000}));
  const auto bad = parse_smaps_regions("zz-10 rw-p 0 00:00 0\nVmFlags: mg\n",
                                       CandidateMemory::mergeable, "smaps");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().line, 1);
}

// A child holding 1,000 pages marked mergeable: 100 zero pages, 60 groups of 10 identical pages
// (600), 300 unique pages. On SIGUSR1 it rewrites 50 of the unique pages.
class KnownMemory : public ::testing::Test {
 protected:
  static constexpr std::size_t kPages = 1000;
  void SetUp() override {
    page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    child_ = fork();
    if (child_ == 0) {
      close(ready[0]);
      // Twice the pages mapped; only the first half mergeable (its own mapping) and touched.
      auto* mem = static_cast<unsigned char*>(mmap(
          nullptr, 2 * kPages * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
      madvise(mem, kPages * page_, MADV_MERGEABLE);
      std::mt19937_64 rng(42);
      for (std::size_t p = 0; p < kPages; ++p) {
        unsigned char* pg = mem + p * page_;
        if (p < 100) {
          std::memset(pg, 0, page_);  // touched, so resident, and empty
        } else if (p < 700) {
          std::memset(pg, static_cast<int>(1 + (p - 100) / 10), page_);  // groups of 10
        } else {
          for (std::size_t i = 0; i < page_; i += 8) {
            const std::uint64_t v = rng();
            std::memcpy(pg + i, &v, 8);
          }
        }
      }
      // Read, never written: the kernel maps the shared zero page there.
      volatile unsigned char sink = 0;
      for (std::size_t p = kPages; p < kPages + 10; ++p) {
        sink = sink + mem[p * page_];
      }
      static unsigned char* region = mem;
      static std::size_t page_size = page_;
      signal(SIGUSR1, [](int) {
        for (std::size_t p = 700; p < 750; ++p) {
          region[p * page_size] ^= 0xff;
        }
      });
      const auto address = reinterpret_cast<std::uintptr_t>(mem);
      (void)!write(ready[1], &address, sizeof address);
      for (;;) {
        pause();
      }
    }
    close(ready[1]);
    std::uintptr_t address = 0;
    ASSERT_EQ(read(ready[0], &address, sizeof address), static_cast<ssize_t>(sizeof address));
    close(ready[0]);
    region_ = {address, address + kPages * page_};
  }
  void TearDown() override {
    kill(child_, SIGKILL);
    waitpid(child_, nullptr, 0);
  }
  // Whether the child's first read-only page maps the shared zero page, as the plain page map
  // tells it: present, but neither a file page nor one the child maps alone. A kernel may instead
  // give a read fault a page of its own (one booted with pvm_no_zero_page, say).
  bool reads_map_the_zero_page() const {
    const int fd = open(("/proc/" + std::to_string(child_) + "/pagemap").c_str(), O_RDONLY);
    std::uint64_t entry = 0;
    const bool read_ok = fd >= 0 && pread(fd, &entry, sizeof entry,
                                          static_cast<off_t>(region_.end / page_ * 8)) == 8;
    if (fd >= 0) {
      close(fd);
    }
    EXPECT_TRUE(read_ok);
    EXPECT_NE(entry >> 63, 0u) << "the page the child read is not present";
    return (entry >> 63 & 1) != 0 && (entry >> 61 & 1) == 0 && (entry >> 56 & 1) == 0;
  }
  std::size_t page_ = 4096;
  pid_t child_ = -1;
  MemoryRegion region_;
};

// Found by the fuzzer: an error quoting a malformed smaps line carried its bytes as they were,
// invalid UTF-8 included.
TEST(SmapsRegions, ErrorsQuoteValidUtf8) {
  const auto r = parse_smaps_regions("7f00-\xfe\xff rw-p 00000000 00:00 0\nVmFlags: rd wr mg\n",
                                     CandidateMemory::mergeable, "smaps");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(is_valid_utf8(r.error().message)) << r.error().message;
}

TEST_F(KnownMemory, CountsAreExact) {
  const auto regions = candidate_regions("/proc", child_, CandidateMemory::mergeable);
  ASSERT_TRUE(regions.ok()) << regions.error().to_string();
  ASSERT_EQ(regions->size(), 1u);
  EXPECT_EQ((*regions)[0], region_);

  PageScanner scanner;
  const auto first = scanner.scan(child_, *regions);
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  EXPECT_EQ(first->candidate_pages, kPages);
  EXPECT_EQ(first->resident_pages, kPages);
  EXPECT_EQ(first->unreadable_pages, 0u);
  EXPECT_EQ(first->zero_pages, 100u);
  EXPECT_EQ(first->distinct_pages, 1u + 60 + 300);
  EXPECT_EQ(first->duplicate_pages, kPages - 361);
  EXPECT_DOUBLE_EQ(first->zero_ratio(), 0.10);
  EXPECT_DOUBLE_EQ(first->duplicate_ratio(), 0.639);
  EXPECT_EQ(first->estimated_savings_bytes(), 639 * page_);
  EXPECT_FALSE(first->volatile_ratio.has_value());

  kill(child_, SIGUSR1);
  usleep(100'000);
  const auto second = scanner.scan(child_, *regions);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(second->volatile_ratio.has_value());
  EXPECT_DOUBLE_EQ(*second->volatile_ratio, 50.0 / kPages);
  EXPECT_EQ(second->distinct_pages, 361u);  // rewritten pages are still unique
}

TEST_F(KnownMemory, OnlyResidentPagesAreRead) {
  // A region twice as large, whose second half is mapped but was never written: those pages
  // are not read (that would map them) and not counted, nor are the ten the child read where
  // they map the shared zero page (no memory, nothing to merge). Where the kernel gave each read
  // a page of its own, those ten are resident empty pages like the first hundred.
  PageScanner scanner;
  const MemoryRegion wider{region_.start, region_.start + 2 * kPages * page_};
  auto f = scanner.scan(child_, {wider});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->candidate_pages, 2 * kPages);
  if (reads_map_the_zero_page()) {
    EXPECT_EQ(f->resident_pages, kPages);
    EXPECT_GE(f->unmergeable_pages, 10u);
    EXPECT_EQ(f->zero_pages, 100u);
  } else {
    EXPECT_EQ(f->resident_pages, kPages + 10);
    EXPECT_EQ(f->zero_pages, 110u);
  }
  const auto regions = candidate_regions("/proc", child_, CandidateMemory::mergeable);
  ASSERT_TRUE(regions.ok());
  ASSERT_EQ(regions->size(), 1u);
  EXPECT_EQ((*regions)[0], region_);  // the untouched half is not mergeable
  const auto gone = scanner.scan(999'999'999, {wider});
  EXPECT_FALSE(gone.ok());
}

TEST_F(KnownMemory, HashSamplesEstimateDuplicatesAcrossProcesses) {
  const auto regions = candidate_regions("/proc", child_, CandidateMemory::mergeable);
  ASSERT_TRUE(regions.ok());
  PageScanner scanner;
  ScanOptions every;
  every.hash_sample_below = UINT64_MAX;
  const auto f = scanner.scan(child_, *regions, every);
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->sampled_hashes.size(), 900u) << "every resident page but the 100 zero ones";
  EXPECT_TRUE(std::is_sorted(f->sampled_hashes.begin(), f->sampled_hashes.end()));
  std::uint64_t sampled = 0;
  // 900 non-zero pages with 360 distinct contents: 540 duplicates within the process; the same
  // memory in two processes (two identical guests) adds all 900 pages as duplicates.
  EXPECT_EQ(sampled_duplicates({&f->sampled_hashes}, UINT64_MAX, sampled), 540u);
  EXPECT_EQ(sampled, 900u);
  EXPECT_EQ(sampled_duplicates({&f->sampled_hashes, &f->sampled_hashes}, UINT64_MAX, sampled),
            1440u);
  EXPECT_EQ(sampled, 1800u);
  // A lower threshold keeps exactly the hashes at or under it (every copy of a content or none).
  const std::uint64_t half = UINT64_MAX / 2;
  std::vector<std::uint64_t> under;
  for (const auto h : f->sampled_hashes) {
    if (h <= half) {
      under.push_back(h);
    }
  }
  const auto distinct =
      static_cast<std::uint64_t>(std::unique(under.begin(), under.end()) - under.begin());
  const std::uint64_t kept = std::count_if(f->sampled_hashes.begin(), f->sampled_hashes.end(),
                                           [&](std::uint64_t h) { return h <= half; });
  EXPECT_EQ(sampled_duplicates({&f->sampled_hashes}, half, sampled), kept - distinct);
  EXPECT_EQ(sampled, kept);
  // Without a threshold nothing is kept.
  const auto none = scanner.scan(child_, *regions);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->sampled_hashes.empty());
}

TEST_F(KnownMemory, PaceIsCalledPerBatchAndCanAbandonThePass) {
  const auto regions = candidate_regions("/proc", child_, CandidateMemory::mergeable);
  ASSERT_TRUE(regions.ok());
  PageScanner scanner;
  std::vector<std::uint64_t> seen;
  ScanOptions o;
  o.pace = [&](std::uint64_t read) {
    seen.push_back(read);
    return true;
  };
  ASSERT_TRUE(scanner.scan(child_, *regions, o).ok());
  // 1,000 pages: one full batch of 512, then the end of the (only) 64 MiB window of address
  // space; the remainder is read at the end of the pass. Pages a running ksmd has merged
  // meanwhile wait in the shared batch and are read with the full one, so the first call may
  // count a few more than 512.
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_GE(seen[0], 512 * page_);
  EXPECT_LT(seen[0], 1000 * page_);
  EXPECT_EQ(seen[1], seen[0]);
  o.pace = [](std::uint64_t) { return false; };
  const auto abandoned = scanner.scan(child_, *regions, o);
  ASSERT_FALSE(abandoned.ok());
  EXPECT_EQ(abandoned.error().sys_errno, ECANCELED);
}

// The pass's memory budget: past max_hashes only a hash-value sample is kept, and the duplicate
// count is estimated from it (exact counts: 540 duplicates among the 900 non-zero pages, 99
// among the zero ones).
TEST_F(KnownMemory, HashesStayWithinTheBudgetAndDuplicatesAreEstimated) {
  const auto regions = candidate_regions("/proc", child_, CandidateMemory::mergeable);
  ASSERT_TRUE(regions.ok());
  PageScanner scanner;
  ScanOptions o;
  o.max_hashes = 256;
  o.hash_sample_below = UINT64_MAX;
  const auto f = scanner.scan(child_, *regions, o);
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_EQ(f->resident_pages, kPages);
  EXPECT_EQ(f->zero_pages, 100u);
  EXPECT_LT(f->sampled_hashes.size(), 256u);
  EXPECT_LT(f->kept_hash_ratio, 0.3);
  EXPECT_LT(f->hash_sample_below, UINT64_MAX / 2);  // the cross-process sample shrank with it
  for (const auto h : f->sampled_hashes) {
    EXPECT_LE(h, f->hash_sample_below);
  }
  const double exact = 540 + 99;
  EXPECT_NEAR(static_cast<double>(f->duplicate_pages), exact, 0.2 * exact);
  EXPECT_EQ(f->distinct_pages, f->resident_pages - f->duplicate_pages);
  // Within the budget the count is exact.
  o.max_hashes = 4096;
  const auto exact_f = scanner.scan(child_, *regions, o);
  ASSERT_TRUE(exact_f.ok());
  EXPECT_EQ(exact_f->duplicate_pages, 639u);
  EXPECT_EQ(exact_f->kept_hash_ratio, 1.0);
}

// A sparse mapping (16 GiB of address space, a few pages resident) is walked 64 MiB at a time
// with a pace call after each window: the budget covers the walk, and a stop reaches the pass
// at once (it once ran unpaced for the whole range: ~50 s of a core for many TiB).
TEST(PageScannerPacing, ASparseMappingIsPacedByTheWalkAndStopsAtOnce) {
  const std::uint64_t size = 16ULL << 30;
  auto* mem = static_cast<char*>(mmap(nullptr, size, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  ASSERT_NE(mem, MAP_FAILED);
  for (std::uint64_t off = 0; off < size; off += size / 8) {
    mem[off] = 1;  // eight resident pages
  }
  const auto start = reinterpret_cast<std::uint64_t>(mem);
  PageScanner scanner;
  std::size_t calls = 0;
  ScanOptions o;
  o.pace = [&](std::uint64_t) {
    ++calls;
    return true;
  };
  const auto f = scanner.scan(getpid(), {{start, start + size}}, o);
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_EQ(f->resident_pages, 8u);
  EXPECT_GE(calls, size / (64ULL << 20));  // once per 64 MiB window at least
  // A pace that says stop ends the pass at its next window, not at the end of the range.
  calls = 0;
  o.pace = [&](std::uint64_t) { return ++calls < 3; };
  const auto stopped = scanner.scan(getpid(), {{start, start + size}}, o);
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.error().sys_errno, ECANCELED);
  EXPECT_EQ(calls, 3u);
  munmap(mem, size);
}

std::optional<long> read_number(const std::string& path) {
  std::ifstream in(path);
  long v = 0;
  return in >> v ? std::optional<long>(v) : std::nullopt;
}

// Reading pages must not undo KSM's work: process_vm_readv's read-only pins unshare merged
// pages (Linux 5.19+), which made every scan pass break the merges it was measuring.
TEST_F(KnownMemory, ScanningLeavesKsmMergesAlone) {
  const std::string ksm = "/sys/kernel/mm/ksm/";
  const std::string merging = "/proc/" + std::to_string(child_) + "/ksm_merging_pages";
  if (access((ksm + "run").c_str(), W_OK) != 0 || !read_number(merging)) {
    GTEST_SKIP() << "needs a writable /sys/kernel/mm/ksm and /proc/PID/ksm_merging_pages";
  }
  struct Saved {
    std::string file;
    long value;
  };
  std::vector<Saved> saved;
  for (const char* f : {"pages_to_scan", "sleep_millisecs", "run"}) {
    saved.push_back({ksm + f, *read_number(ksm + f)});
  }
  auto write = [](const std::string& path, long v) { std::ofstream(path) << v << '\n'; };
  struct Restore {
    std::vector<Saved>& saved;
    std::function<void(const std::string&, long)> write;
    ~Restore() {
      for (const auto& s : saved) {
        write(s.file, s.value);
      }
    }
  } restore{saved, write};
  write(ksm + "pages_to_scan", 2000);
  write(ksm + "sleep_millisecs", 10);
  write(ksm + "run", 1);
  auto frames = [&]() {
    std::set<std::uint64_t> pfns;
    const int fd = open(("/proc/" + std::to_string(child_) + "/pagemap").c_str(), O_RDONLY);
    std::vector<std::uint64_t> entries(kPages);
    const auto n =
        pread(fd, entries.data(), kPages * 8, static_cast<off_t>(region_.start / page_ * 8));
    close(fd);
    EXPECT_EQ(n, static_cast<ssize_t>(kPages * 8));
    for (const auto e : entries) {
      pfns.insert(e & ((1ULL << 55) - 1));
    }
    return pfns.size();
  };
  // 100 zero pages and 60 groups of 10: up to 700 of the child's pages merge, leaving at most
  // 361 distinct contents. ksmd merges them over several passes (slower on a loaded machine):
  // wait for all of them, not for the first 600.
  long merged = 0;
  std::size_t distinct = kPages;
  for (int i = 0; i < 300 && (merged < 600 || distinct > 400); ++i) {
    usleep(100'000);
    merged = read_number(merging).value_or(0);
    distinct = frames();
  }
  ASSERT_GE(merged, 600) << "ksmd did not merge the child's duplicate pages within 30 s";
  // Stop ksmd (merged pages stay merged) so nothing is merged again behind the scan's back, and
  // compare which physical pages back the child's memory before and after.
  write(ksm + "run", 0);
  const std::size_t before = frames();
  ASSERT_LE(before, 400u) << "merged: at most 361 distinct contents, so as many frames";
  const auto regions = candidate_regions("/proc", child_, CandidateMemory::mergeable);
  ASSERT_TRUE(regions.ok());
  PageScanner scanner;
  const auto f = scanner.scan(child_, *regions);
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_EQ(f->duplicate_pages, kPages - 361) << "merged pages read as what they hold";
  EXPECT_EQ(frames(), before) << "the scan unshared merged pages";
}

}  // namespace
}  // namespace memtide::collectors

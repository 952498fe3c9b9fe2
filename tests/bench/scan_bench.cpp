// Page scanner throughput (target: 4 GB/s of resident pages hashed per core) over this
// process's own 256 MiB of random, resident memory, and the error of the duplicate estimate
// against known contents, exact and from a hash-value sample (the mode of hosts with more than
// 8 GiB of guest RAM). Run with scripts/bench.
#include <cmath>
#include <cstring>
#include <random>

#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <unistd.h>

#include <memtide/collectors/page_scanner.hpp>

namespace {

void BM_ScanPages(benchmark::State& state) {
  const std::size_t bytes = static_cast<std::size_t>(state.range(0)) << 20;
  auto* mem = static_cast<unsigned char*>(
      mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  std::mt19937_64 rng(1);
  for (std::size_t i = 0; i < bytes; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(mem + i, &v, 8);
  }
  const auto start = reinterpret_cast<std::uint64_t>(mem);
  memtide::collectors::PageScanner scanner;
  for (auto _ : state) {
    auto f = scanner.scan(getpid(), {{start, start + bytes}});
    benchmark::DoNotOptimize(f);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  munmap(mem, bytes);
}
BENCHMARK(BM_ScanPages)->Arg(256)->Unit(benchmark::kMillisecond);

// 256 MiB (65,536 pages) of known content: 10 % zero, 50 % in groups of 8 identical pages, 40 %
// unique, each non-zero page filled from a seed (`seeds` + group or page number). Returns the
// mapping and the true duplicate share, (resident - distinct) / resident.
struct KnownContent {
  unsigned char* mem = nullptr;
  std::size_t pages = 65536;
  std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  double truth = 0;
  explicit KnownContent(std::uint64_t seeds) {
    mem = static_cast<unsigned char*>(
        mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    const std::size_t zero = pages / 10;
    const std::size_t grouped = pages / 2;
    for (std::size_t p = 0; p < pages; ++p) {
      unsigned char* pg = mem + p * page;
      if (p < zero) {
        std::memset(pg, 0, page);
        continue;
      }
      // Grouped pages take their group's seed; unique pages their own.
      std::mt19937_64 fill(p < zero + grouped ? seeds + (p - zero) / 8 : seeds + 1'000'000 + p);
      for (std::size_t i = 0; i < page; i += 8) {
        const std::uint64_t v = fill();
        std::memcpy(pg + i, &v, 8);
      }
    }
    truth = static_cast<double>((zero - 1) + (grouped - grouped / 8)) / static_cast<double>(pages);
  }
  ~KnownContent() { munmap(mem, pages * page); }
  std::uint64_t start() const { return reinterpret_cast<std::uint64_t>(mem); }
  std::uint64_t end() const { return start() + pages * page; }
};

// Counters: error of the exact count and of the estimate from a 1/16 hash-value sample, in
// percentage points of resident memory.
void BM_EstimateError(benchmark::State& state) {
  const KnownContent content(1'000'000);
  memtide::collectors::PageScanner scanner;
  memtide::collectors::ScanOptions options;
  options.hash_sample_below = UINT64_MAX / 16;
  double exact = 0;
  double sampled = 0;
  for (auto _ : state) {
    auto f = scanner.scan(getpid(), {{content.start(), content.end()}}, options);
    std::uint64_t in_sample = 0;
    const auto dups = memtide::collectors::sampled_duplicates({&f->sampled_hashes},
                                                              options.hash_sample_below, in_sample);
    exact = static_cast<double>(f->duplicate_pages) / static_cast<double>(f->resident_pages);
    const double nonzero = static_cast<double>(f->resident_pages - f->zero_pages);
    sampled = (static_cast<double>(f->zero_pages - 1) +
               nonzero * static_cast<double>(dups) / static_cast<double>(in_sample)) /
              static_cast<double>(f->resident_pages);
  }
  state.counters["truth_pct"] = content.truth * 100;
  state.counters["exact_error_pts"] = std::abs(exact - content.truth) * 100;
  state.counters["sampled_error_pts"] = std::abs(sampled - content.truth) * 100;
}
BENCHMARK(BM_EstimateError)->Unit(benchmark::kMillisecond)->Iterations(1);

// The duplicate estimate of one pass under its memory budget (ksm.scan.max_memory): known
// content counted with room for every hash, then with a budget of 1/8, 1/16 and 1/64 of the
// pages. Counters: the error in percentage points of resident memory, and the hashes held.
void BM_EstimateErrorAtBudget(benchmark::State& state) {
  const KnownContent content(2'000'000);
  memtide::collectors::PageScanner scanner;
  memtide::collectors::ScanOptions options;
  options.max_hashes = static_cast<std::size_t>(state.range(0));
  double estimate = 0;
  double kept = 0;
  for (auto _ : state) {
    auto f = scanner.scan(getpid(), {{content.start(), content.end()}}, options);
    estimate = static_cast<double>(f->duplicate_pages) / static_cast<double>(f->resident_pages);
    kept = f->kept_hash_ratio * static_cast<double>(f->resident_pages - f->zero_pages);
  }
  state.counters["budget_share"] =
      static_cast<double>(options.max_hashes) / static_cast<double>(content.pages);
  state.counters["hashes_kept"] = kept;
  state.counters["error_pts"] = std::abs(estimate - content.truth) * 100;
}
BENCHMARK(BM_EstimateErrorAtBudget)
    ->Arg(1 << 17)
    ->Arg(8192)
    ->Arg(4096)
    ->Arg(1024)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1);

}  // namespace

// Page scanner throughput (target: 4 GB/s of resident pages hashed per core) over this
// process's own 256 MiB of random, resident memory. Run with scripts/bench.
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

}  // namespace

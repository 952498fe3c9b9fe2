// Benchmarks of the collection hot paths. Run with scripts/bench; not part of the test suite
// (timings on shared machines are noisy: compare medians and ratios, not single runs).
#include <cstdio>
#include <fstream>
#include <string>

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <memtide/collectors/host_source.hpp>
#include <memtide/collectors/libvirt_hypervisor.hpp>

namespace {

// A libvirt test-driver host with `n` running domains, written to a temporary file.
std::string write_node(int n) {
  char path[] = "/tmp/memtide-bench-node-XXXXXX.xml";
  const int fd = mkstemps(path, 4);
  close(fd);
  std::ofstream out(path);
  out << "<node>\n";
  for (int i = 0; i < n; ++i) {
    char uuid[40];
    std::snprintf(uuid, sizeof uuid, "00000000-0000-0000-0000-%012d", i);
    out << "<domain type='test'><name>vm-" << i << "</name><uuid>" << uuid
        << "</uuid><memory unit='MiB'>2048</memory><currentMemory unit='MiB'>1024</currentMemory>"
        << "<vcpu>1</vcpu><os><type>hvm</type></os>"
        << "<metadata><m:vm xmlns:m='urn:memtide:domain:1' class='web' floor='25%'/></metadata>"
        << "<devices><memballoon model='virtio'><stats period='5'/></memballoon></devices>"
        << "</domain>\n";
  }
  out << "</node>\n";
  return path;
}

// One tick's VM collection over N test-driver domains, in steady state (inventory and domain
// XML facts already cached, as in every tick but the first).
void BM_CollectDomains(benchmark::State& state) {
  const auto path = write_node(static_cast<int>(state.range(0)));
  memtide::collectors::LibvirtOptions o;
  o.uri = "test://" + path;
  o.procfs = "/proc";
  o.relist_interval = std::chrono::hours(1);
  memtide::collectors::LibvirtHypervisor h(o);
  std::int64_t now = 0;
  if (!h.collect(now).ok()) {
    state.SkipWithError("collect failed");
  }
  for (auto _ : state) {
    now += 1000;
    auto r = h.collect(now);
    benchmark::DoNotOptimize(r);
  }
  std::remove(path.c_str());
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_CollectDomains)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

// The first tick after start or reconnect: listing plus every domain's XML.
void BM_CollectDomainsCold(benchmark::State& state) {
  const auto path = write_node(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    memtide::collectors::LibvirtOptions o;
    o.uri = "test://" + path;
    o.procfs = "/proc";
    memtide::collectors::LibvirtHypervisor h(o);
    auto r = h.collect(0);
    benchmark::DoNotOptimize(r);
  }
  std::remove(path.c_str());
}
BENCHMARK(BM_CollectDomainsCold)->Arg(1000)->Unit(benchmark::kMillisecond);

void BM_HostCollect(benchmark::State& state) {
  memtide::collectors::HostSource host({});
  memtide::collectors::KsmReader ksm;
  for (auto _ : state) {
    auto h = host.read();
    auto k = ksm.read();
    benchmark::DoNotOptimize(h);
    benchmark::DoNotOptimize(k);
  }
}
BENCHMARK(BM_HostCollect)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();

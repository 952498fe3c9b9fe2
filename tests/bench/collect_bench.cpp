// Benchmarks of the collection hot paths. Run with scripts/bench; not part of the test suite
// (timings on shared machines are noisy: compare medians and ratios, not single runs).
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memtide/collectors/domain_xml.hpp>
#include <memtide/collectors/host_source.hpp>
#include <memtide/collectors/libvirt_hypervisor.hpp>
#include <memtide/collectors/qemu_process.hpp>

namespace {

std::string domain_uuid(int i) {
  char uuid[40];
  std::snprintf(uuid, sizeof uuid, "00000000-0000-0000-0000-%012d", i);
  return uuid;
}

// One stand-in QEMU process per domain, as on a host: a copy of qemu_placeholder named
// qemu-system-x86_64, started as "qemu-system-x86_64 -uuid UUID", so the collection finds,
// trusts (when run as root: a root-owned binary) and reads a process for each domain.
class Placeholders {
 public:
  explicit Placeholders(int n) {
    char dir[] = "/tmp/memtide-bench-qemu-XXXXXX";
    if (mkdtemp(dir) == nullptr) {
      return;
    }
    dir_ = dir;
    const std::string binary = dir_ + "/qemu-system-x86_64";
    std::filesystem::copy_file(MEMTIDE_QEMU_PLACEHOLDER, binary);
    std::filesystem::permissions(binary, std::filesystem::perms(0755));
    for (int i = 0; i < n; ++i) {
      const std::string uuid = domain_uuid(i);
      const pid_t pid = fork();
      if (pid == 0) {
        execl(binary.c_str(), "qemu-system-x86_64", "-uuid", uuid.c_str(), nullptr);
        _exit(127);
      }
      if (pid > 0) {
        pids_.push_back(pid);
      }
    }
    usleep(200 * 1000);  // until every child has exec'd (its command line is the QEMU one)
  }
  ~Placeholders() {
    for (const pid_t pid : pids_) {
      kill(pid, SIGKILL);
    }
    for (const pid_t pid : pids_) {
      waitpid(pid, nullptr, 0);
    }
    if (!dir_.empty()) {
      std::filesystem::remove_all(dir_);
    }
  }
  Placeholders(const Placeholders&) = delete;
  Placeholders& operator=(const Placeholders&) = delete;

 private:
  std::string dir_;
  std::vector<pid_t> pids_;
};

// A libvirt test-driver host with `n` running domains, written to a temporary file.
std::string write_node(int n) {
  char path[] = "/tmp/memtide-bench-node-XXXXXX.xml";
  const int fd = mkstemps(path, 4);
  close(fd);
  std::ofstream out(path);
  out << "<node>\n";
  for (int i = 0; i < n; ++i) {
    out << "<domain type='test'><name>vm-" << i << "</name><uuid>" << domain_uuid(i)
        << "</uuid><memory unit='MiB'>2048</memory><currentMemory unit='MiB'>1024</currentMemory>"
        << "<vcpu>1</vcpu><os><type>hvm</type></os>"
        << "<metadata><m:vm xmlns:m='urn:memtide:domain:1' class='web' floor='25%'/></metadata>"
        << "<devices><memballoon model='virtio'><stats period='5'/></memballoon></devices>"
        << "</domain>\n";
  }
  out << "</node>\n";
  return path;
}

// What the Collector says of a host with swap in use whose swap and KSM counts stand still:
// each process's statm is read every tick, its VmSwap and ksm_stat when first seen.
memtide::collectors::ProcessReadHints still_host() {
  memtide::collectors::ProcessReadHints hints;
  hints.swap_in_use = true;
  hints.swap_epoch = 1;
  hints.ksm_epoch = 1;
  return hints;
}

// One tick's VM collection over N test-driver domains, in steady state (inventory and domain
// XML facts already cached, as in every tick but the first), without and with a QEMU process
// per domain (second argument 1).
void BM_CollectDomains(benchmark::State& state) {
  const auto path = write_node(static_cast<int>(state.range(0)));
  const Placeholders processes(state.range(1) != 0 ? static_cast<int>(state.range(0)) : 0);
  memtide::collectors::LibvirtOptions o;
  o.uri = "test://" + path;
  o.procfs = "/proc";
  o.relist_interval = std::chrono::hours(1);
  memtide::collectors::LibvirtHypervisor h(o);
  const auto hints = still_host();
  std::int64_t now = 0;
  if (!h.collect(now, hints).ok()) {
    state.SkipWithError("collect failed");
  }
  for (auto _ : state) {
    now += 1000;
    auto r = h.collect(now, hints);
    benchmark::DoNotOptimize(r);
  }
  std::remove(path.c_str());
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_CollectDomains)
    ->Args({100, 0})
    ->Args({1000, 0})
    ->Args({1000, 1})
    ->Unit(benchmark::kMillisecond);

// The first tick after start or reconnect, with a QEMU process per domain: listing, every
// domain's XML, the search of /proc for the QEMU processes and their first reads (statm and
// ksm_stat; VmSwap comes from the search's read of status). The connection is opened outside
// the timing: with the test driver, opening it is libvirt parsing every domain definition
// in-process, which on a real host libvirtd did when it started.
// Second argument 1: a host whose KSM holds nothing (off and never run, as on most hosts), where
// no process's ksm_stat is read; 0: KSM holds something, and each is read once.
void BM_CollectDomainsCold(benchmark::State& state) {
  const auto path = write_node(static_cast<int>(state.range(0)));
  const Placeholders processes(static_cast<int>(state.range(0)));
  auto hints = still_host();
  if (state.range(1) != 0) {
    memtide::KsmSample nothing_held;
    nothing_held.general_profit_bytes = 0;
    nothing_held.zero_pages_bytes = 0;
    hints.ksm_all_zero = memtide::collectors::empty_process_ksm_stat(nothing_held);
  }
  for (auto _ : state) {
    state.PauseTiming();
    memtide::collectors::LibvirtOptions o;
    o.uri = "test://" + path;
    o.procfs = "/proc";
    auto h = std::make_unique<memtide::collectors::LibvirtHypervisor>(o);
    if (!h->connect(0).ok()) {
      state.SkipWithError("cannot open the test driver");
      break;
    }
    state.ResumeTiming();
    auto r = h->collect(0, hints);
    benchmark::DoNotOptimize(r);
    state.PauseTiming();
    h.reset();
    state.ResumeTiming();
  }
  std::remove(path.c_str());
}
BENCHMARK(BM_CollectDomainsCold)->Args({1000, 0})->Args({1000, 1})->Unit(benchmark::kMillisecond);

// Reading the facts from a running guest's domain XML (tests/fixtures: 3.3 KB from libvirt 9.0,
// a small guest; real ones with more disks and controllers are larger): once per domain on the
// first tick, and again after each domain event.
void BM_ParseDomainXml(benchmark::State& state) {
  std::ifstream file(std::string(MEMTIDE_FIXTURES) + "/libvirt/running-guest.xml");
  const std::string xml((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  for (auto _ : state) {
    auto facts = memtide::collectors::parse_domain_xml(xml);
    if (!facts) {
      state.SkipWithError("the fixture does not parse");
      break;
    }
    benchmark::DoNotOptimize(facts);
  }
}
BENCHMARK(BM_ParseDomainXml)->Unit(benchmark::kMicrosecond);

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

// Rendering /metrics for many VMs (target: 1,000 VMs in under 5 ms), and gzipping the page for
// scrapers that accept it (once per page, on the HTTP thread), and inflating it back for those that
// do not once it is held gzipped; and recording a tick in the decision history (report/history),
// which memtided does every tick. Run with scripts/bench.
#include <benchmark/benchmark.h>

#include <memtide/config/loader.hpp>
#include <memtide/policy/engine.hpp>
#include <memtide/report/history.hpp>
#include <memtide/report/metrics.hpp>

#include "../support/sizes.hpp"
#include "gzip.hpp"

namespace {

using memtide::test_sizes::GiB;

// The full page of `vms` VMs at metrics.per_vm `per_vm` (0 full, 1 decisions, 2 off).
std::string page_of(int vms, int per_vm, benchmark::State* state) {
  memtide::Snapshot s;
  s.hypervisor_up = true;
  s.host.meminfo.total_bytes = 1024 * GiB;
  s.host.psi_memory = memtide::Pressure{{0.1, 0.2, 0.3, 40}, memtide::PressureLine{}};
  s.ksm = memtide::KsmSample{};
  memtide::policy::PolicyState policy_state;
  for (int i = 0; i < vms; ++i) {
    memtide::VmSample v;
    v.name = "vm-" + std::to_string(i);
    v.uuid = "00000000-0000-0000-0000-" + std::to_string(100000000000LL + i);
    v.state = memtide::VmState::running;
    v.stats_status = memtide::GuestStatsStatus::ok;
    v.max_bytes = 8 * GiB;
    v.current_bytes = 6 * GiB + static_cast<std::uint64_t>(i) * 4096;
    v.guest.usable_bytes = 2 * GiB;
    v.guest.unused_bytes = GiB;
    v.guest.disk_caches_bytes = GiB;
    v.guest.swap_in_bytes_total = 1234;
    v.guest.swap_out_bytes_total = 5678;
    v.guest.major_faults_total = 99;
    v.process = memtide::QemuProcess{1000 + i, 6 * GiB, 0, std::nullopt};
    policy_state.vms[v.uuid].last_target_bytes = v.current_bytes;
    s.vms.push_back(std::move(v));
  }
  auto config = std::make_shared<memtide::config::Config>(*memtide::config::default_config());
  config->metrics.per_vm = static_cast<memtide::config::PerVmMetrics>(per_vm);
  memtide::policy::Plan plan;
  memtide::report::DaemonFigures figures;
  const memtide::collectors::VirtFacts facts{"ept", "madvise"};
  const memtide::report::TickReport in{&s, &plan, &policy_state, &facts, config.get(), &figures};
  if (state == nullptr) {
    return memtide::report::render_metrics(in);
  }
  std::size_t bytes = 0;
  for (auto _ : *state) {
    const std::string page = memtide::report::render_metrics(in);
    bytes = page.size();
    benchmark::DoNotOptimize(page.data());
  }
  state->counters["page_bytes"] = static_cast<double>(bytes);
  return {};
}

void BM_RenderMetrics(benchmark::State& state) {
  page_of(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)), &state);
}

// Arguments: VMs, zlib level. The server uses level 1.
void BM_GzipMetricsPage(benchmark::State& state) {
  const std::string page = page_of(static_cast<int>(state.range(0)), 0, nullptr);
  std::size_t bytes = 0;
  for (auto _ : state) {
    const std::string gz = memtide::daemon::gzip(page, static_cast<int>(state.range(1)));
    bytes = gz.size();
    benchmark::DoNotOptimize(gz.data());
  }
  state.counters["page_bytes"] = static_cast<double>(page.size());
  state.counters["gzip_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_GzipMetricsPage)->Args({1000, 1})->Args({1000, 6})->Unit(benchmark::kMillisecond);

// Argument: VMs. A page held gzipped, inflated for a scrape that wants it plain.
void BM_GunzipMetricsPage(benchmark::State& state) {
  const std::string gz =
      memtide::daemon::gzip(page_of(static_cast<int>(state.range(0)), 0, nullptr), 1);
  for (auto _ : state) {
    const std::string page = memtide::daemon::gunzip(gz);
    benchmark::DoNotOptimize(page.data());
  }
}
BENCHMARK(BM_GunzipMetricsPage)->Arg(1000)->Unit(benchmark::kMillisecond);

// Argument: VMs. One tick's record in the decision history, 10 s after the last: every VM whose
// last sample is a minute old is judged for a new one (here a tenth of them each tick, as when
// they were first seen over a minute), and a quarter of those moved.
void BM_RecordHistory(benchmark::State& state) {
  const int vms = static_cast<int>(state.range(0));
  memtide::Snapshot s;
  s.hypervisor_up = true;
  s.host.meminfo.total_bytes = 1024 * GiB;
  memtide::policy::PolicyState policy_state;
  for (int i = 0; i < vms; ++i) {
    memtide::VmSample v;
    v.name = "vm-" + std::to_string(i);
    v.uuid = "uuid-" + std::to_string(i);
    v.state = memtide::VmState::running;
    v.stats_status = memtide::GuestStatsStatus::ok;
    v.max_bytes = 8 * GiB;
    v.current_bytes = 6 * GiB;
    v.guest.usable_bytes = 2 * GiB;
    s.vms.push_back(std::move(v));
  }
  const auto config = memtide::config::default_config();
  // The plan of these VMs, as the daemon records it after deciding.
  auto decision = memtide::policy::decide(s, {}, *config, 0);
  memtide::policy::Plan plan = std::move(decision.plan);
  policy_state = std::move(decision.state);
  memtide::report::TickReport in;
  in.snapshot = &s;
  in.plan = &plan;
  in.state = &policy_state;
  in.config = config.get();
  memtide::report::History history;
  std::int64_t t = 1'800'000'000'000;
  for (int tick = 0; tick < 6; ++tick) {  // a minute of ticks: every VM sampled once
    s.collected_at_unix_ms = t += 10'000;
    history.record(in, {});
  }
  int tick = 0;
  for (auto _ : state) {
    s.collected_at_unix_ms = t += 10'000;
    for (std::size_t i = static_cast<std::size_t>(tick % 4); i < s.vms.size(); i += 4) {
      s.vms[i].guest.usable_bytes = (tick % 2 == 0 ? 1 : 2) * GiB;
    }
    ++tick;
    history.record(in, {});
  }
  state.counters["entries"] = static_cast<double>(history.entries().size());
}
BENCHMARK(BM_RecordHistory)->Arg(1000)->Unit(benchmark::kMillisecond);

// Arguments: VMs, metrics.per_vm (0 full, 1 decisions, 2 off).
BENCHMARK(BM_RenderMetrics)
    ->Args({1000, 0})
    ->Args({1000, 1})
    ->Args({1000, 2})
    ->Unit(benchmark::kMillisecond);

}  // namespace

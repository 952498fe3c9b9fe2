// decide() over many VMs (target: 10,000 VMs in under 5 ms). Run with scripts/bench.
#include <random>

#include <benchmark/benchmark.h>

#include <memtide/config/loader.hpp>
#include <memtide/policy/engine.hpp>

#include "../support/sizes.hpp"

namespace {

using memtide::test_sizes::GiB;

memtide::Snapshot many_vms(int n, std::uint64_t available) {
  std::mt19937_64 rng(1);
  memtide::Snapshot s;
  s.host.meminfo.total_bytes = 4096 * GiB;
  s.host.meminfo.available_bytes = available;
  for (int i = 0; i < n; ++i) {
    memtide::VmSample v;
    v.name = "vm-" + std::to_string(i);
    v.uuid = "00000000-0000-0000-0000-" + std::to_string(100000000000LL + i);
    v.state = memtide::VmState::running;
    v.stats_status = memtide::GuestStatsStatus::ok;
    v.max_bytes = (1 + rng() % 16) * GiB;
    v.current_bytes = v.max_bytes / 2 + rng() % (v.max_bytes / 2);
    v.guest.usable_bytes = rng() % v.current_bytes;
    v.guest.swap_in_bytes_total = 0;
    s.vms.push_back(std::move(v));
  }
  return s;
}

// Steady state (a previous tick's state carried in), host under pressure so that every rule
// runs: need, spare, reclaim by shares, clamping.
void BM_Decide(benchmark::State& state) {
  const auto config = memtide::config::default_config();
  const auto snapshot = many_vms(static_cast<int>(state.range(0)), GiB);
  // As in the daemon: the previous tick's state is moved in and the next one kept.
  auto policy_state = memtide::policy::decide(snapshot, {}, *config, 0).state;
  std::int64_t now = 0;
  for (auto _ : state) {
    now += 10'000;
    auto d = memtide::policy::decide(snapshot, std::move(policy_state), *config, now);
    policy_state = std::move(d.state);
    benchmark::DoNotOptimize(d.plan);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_Decide)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace

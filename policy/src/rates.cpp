#include <algorithm>
#include <cstdint>

#include <memtide/policy/rates.hpp>

namespace memtide::policy {

namespace {

double rate(std::uint64_t before, std::uint64_t after, double seconds) {
  return after >= before ? static_cast<double>(after - before) / seconds : 0.0;
}

}  // namespace

HostRates derive_rates(const HostSample& previous, const HostSample& current,
                       double elapsed_seconds) {
  HostRates r;
  if (!(elapsed_seconds > 0)) {
    return r;
  }
  const auto& a = previous.vmstat;
  const auto& b = current.vmstat;
  r.swap_in_bytes_per_second = rate(a.swap_in_bytes_total, b.swap_in_bytes_total, elapsed_seconds);
  r.swap_out_bytes_per_second =
      rate(a.swap_out_bytes_total, b.swap_out_bytes_total, elapsed_seconds);
  r.major_faults_per_second = rate(a.major_faults_total, b.major_faults_total, elapsed_seconds);
  r.page_faults_per_second = rate(a.page_faults_total, b.page_faults_total, elapsed_seconds);
  if (previous.psi_memory && current.psi_memory) {
    const double stalled =
        current.psi_memory->some.total_seconds - previous.psi_memory->some.total_seconds;
    r.psi_memory_some_stall_ratio = std::clamp(stalled / elapsed_seconds, 0.0, 1.0);
    if (previous.psi_memory->full && current.psi_memory->full) {
      const double full =
          current.psi_memory->full->total_seconds - previous.psi_memory->full->total_seconds;
      r.psi_memory_full_stall_ratio = std::clamp(full / elapsed_seconds, 0.0, 1.0);
    }
  }
  return r;
}

}  // namespace memtide::policy

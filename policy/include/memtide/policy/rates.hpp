// Derived figures from two consecutive samples. Pure: time is an input, never read here.
#pragma once

#include <memtide/core/host_sample.hpp>

namespace memtide::policy {

struct HostRates {
  double swap_in_bytes_per_second = 0;
  double swap_out_bytes_per_second = 0;
  double major_faults_per_second = 0;
  double page_faults_per_second = 0;
  double psi_memory_some_stall_ratio = 0;  // share of the interval with memory stalls, from the
                                           // PSI totals (exact, unlike the kernel's avg10)
  double psi_memory_full_stall_ratio = 0;  // the same for "full" (0 where the kernel has none)
  friend bool operator==(const HostRates&, const HostRates&) = default;
};

// Rates over the `elapsed_seconds` between `previous` and `current`. A counter that went
// backwards (reboot between recorded samples, or a wrapped counter) yields 0 for that rate rather
// than a huge or negative figure. `elapsed_seconds <= 0` yields all zeros.
HostRates derive_rates(const HostSample& previous, const HostSample& current,
                       double elapsed_seconds);

}  // namespace memtide::policy

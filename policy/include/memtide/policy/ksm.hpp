// The KSM controller's decision: whether ksmd should merge, and how fast, from what the page
// scanner estimates merging would save. Pure: the daemon supplies the figures and writes the
// result through collectors::KsmControl::apply (which checks ranges and writes only changes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <memtide/config/config.hpp>
#include <memtide/core/ksm_sample.hpp>

namespace memtide::policy {

// What the page scanner found over the guests that allow scanning.
struct KsmEstimate {
  std::uint64_t candidate_bytes = 0;  // guest RAM KSM may merge (mergeable mappings)
  std::uint64_t resident_bytes = 0;   // of it, resident and scanned
  std::uint64_t savings_bytes = 0;    // what merging would free (duplicate pages)
  friend bool operator==(const KsmEstimate&, const KsmEstimate&) = default;
};

struct KsmDecision {
  std::optional<KsmSettings> settings;  // nullopt: leave KSM as it is
  std::string reason;
  friend bool operator==(const KsmDecision&, const KsmDecision&) = default;
};

// A full pass of ksmd over the candidate memory should take about this long: faster wastes CPU
// on memory that has not changed, slower leaves savings on the table under pressure.
inline constexpr double kKsmTargetScanSeconds = 120;
inline constexpr std::uint64_t kKsmSleepMs = 20;  // the kernel's default wake-up interval
inline constexpr std::uint64_t kKsmMinPagesToScan = 64;
inline constexpr std::uint64_t kKsmMaxPagesToScan = 1ULL << 20;

// mode off: merging stopped (run=0; pages already merged stay so). mode on: merging at the pace
// below. mode auto: merging starts only when the estimate says at least ksm.min_savings of the
// candidate memory would be saved and the host is under or heading toward pressure; it stops
// when the kernel reports that merging costs more than it saves (general_profit < 0 after a full
// scan) or when the estimate falls below the minimum. Pace: pages_to_scan for one pass over the
// candidate memory in kKsmTargetScanSeconds at kKsmSleepMs, scaled down when ksmd used more than
// ksm.max_cpu of a core since the last tick (`ksmd_cpu_ratio`).
KsmDecision decide_ksm(const KsmSample& now, const std::optional<KsmEstimate>& estimate,
                       bool host_pressed, std::optional<double> ksmd_cpu_ratio,
                       const config::KsmSection& config, std::uint64_t page_size_bytes);

}  // namespace memtide::policy

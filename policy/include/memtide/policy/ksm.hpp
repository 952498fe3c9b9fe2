// The KSM controller's decision: whether ksmd should merge, and how fast, from what the page
// scanner estimates merging would save. Pure: the daemon supplies the figures and writes the
// result through actuators::KsmWriter::apply (which checks ranges and writes only changes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <memtide/config/config.hpp>
#include <memtide/core/ksm_sample.hpp>
#include <memtide/core/page_scan.hpp>

namespace memtide::policy {

struct KsmDecision {
  std::optional<KsmSettings> settings;  // nullopt: leave KSM as it is
  std::string reason;
  std::optional<double> ksmd_cpu_ratio;  // ksmd's share of a core since the last tick, as seen
  friend bool operator==(const KsmDecision&, const KsmDecision&) = default;
};

// What the controller remembers between ticks.
struct KsmMemory {
  // full_scans when ksmd was first seen merging; general_profit is judged only after two more
  // full scans (the first builds ksmd's trees, merging happens in the second: before that the
  // metadata costs and nothing is saved yet).
  std::optional<std::uint64_t> merging_since_full_scans;
  std::int64_t stopped_for_cost_ms = -1;  // when merging was stopped for costing more than it saved
  friend bool operator==(const KsmMemory&, const KsmMemory&) = default;
};

// After merging was stopped for costing more than it saved, auto mode does not start it again
// for this long (it would only cost again).
inline constexpr std::int64_t kKsmCostHoldOffMs = std::int64_t{30} * 60 * 1000;

inline constexpr std::uint64_t kKsmMinPagesToScan = 64;
inline constexpr std::uint64_t kKsmMaxPagesToScan = 1ULL << 20;

// mode unmanaged: nothing is ever written. mode off: merging stopped (run=0, or run=2 with
// ksm.unmerge). mode on: merging at the pace below. mode auto: merging starts only when the
// estimate says at least ksm.min_savings of the scanned guest memory would be saved and the host is
// under or heading toward pressure
// (`host_pressed`); it stops when the kernel reports that merging costs more than it saves
// (general_profit < 0 two full scans after merging began; then not started again for
// kKsmCostHoldOffMs) or when the estimate falls below the minimum.
//
// Pace: one ksmd pass over the candidate memory in ksm.full_scan_time at ksm.sleep wake-ups.
// When ksmd used more than ksm.max_cpu of a core since the last tick (`ksmd_cpu_ratio`), the
// current pages_to_scan is scaled down by budget / used; below the budget it climbs back toward
// the target at most twofold per tick. With ksm.advisor scan-time on a kernel that has the
// advisor, the kernel sets pages_to_scan itself from the same target and budget.
// ksm.merge_across_nodes, when set and different, is written too (through run=2).
KsmDecision decide_ksm(const KsmSample& now, const std::optional<KsmEstimate>& estimate,
                       bool host_pressed, std::optional<double> ksmd_cpu_ratio,
                       const config::KsmSection& config, KsmMemory& memory, std::int64_t now_ms);

}  // namespace memtide::policy

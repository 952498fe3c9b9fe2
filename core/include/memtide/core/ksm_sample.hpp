// Every file of /sys/kernel/mm/ksm as a value struct. Settings keep the kernel's own units
// (named in the field); memory amounts are converted from pages to bytes. Files a kernel lacks
// are std::nullopt. See Documentation/admin-guide/mm/ksm.rst for the meaning of each.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace memtide {

struct KsmSample {
  // Settings (writable).
  std::uint64_t run = 0;                          // 0 stop, 1 run, 2 stop and unmerge everything
  std::uint64_t pages_to_scan = 0;                // pages scanned per ksmd wake-up
  std::uint64_t sleep_ms = 0;                     // sleep_millisecs between wake-ups
  std::optional<bool> merge_across_nodes;         // only on NUMA kernels
  std::optional<bool> use_zero_pages;             // 4.x+: merge empty pages with the zero page
  std::optional<std::uint64_t> max_page_sharing;  // 4.13+
  std::optional<std::uint64_t> stable_node_chains_prune_ms;       // 4.13+
  std::optional<bool> smart_scan;                                 // 6.7+
  std::optional<std::string> advisor_mode;                        // 6.9+: "none" or "scan-time"
  std::optional<std::uint64_t> advisor_max_cpu_percent;           // 6.9+
  std::optional<std::uint64_t> advisor_min_pages_to_scan;         // 6.9+
  std::optional<std::uint64_t> advisor_max_pages_to_scan;         // 6.9+
  std::optional<std::uint64_t> advisor_target_scan_time_seconds;  // 6.9+

  // Statistics (read-only).
  std::uint64_t shared_bytes = 0;    // pages_shared: KSM pages in use (the merged copies)
  std::uint64_t sharing_bytes = 0;   // pages_sharing: how much memory merging saves
  std::uint64_t unshared_bytes = 0;  // pages_unshared: unique but repeatedly checked
  std::uint64_t volatile_bytes = 0;  // pages_volatile: changing too fast to merge
  std::uint64_t full_scans_total = 0;
  std::optional<std::uint64_t> stable_node_chains;   // 4.13+
  std::optional<std::uint64_t> stable_node_dups;     // 4.13+
  std::optional<std::uint64_t> zero_pages_bytes;     // ksm_zero_pages (6.10+)
  std::optional<std::int64_t> general_profit_bytes;  // 6.5+: savings minus metadata; can be < 0
  std::optional<std::uint64_t> scanned_bytes_total;  // pages_scanned (6.8+)
  std::optional<std::uint64_t> skipped_bytes_total;  // pages_skipped (6.7+, smart scan)
  // CPU time of the ksmd kernel thread (utime + stime of /proc/PID/stat) since boot.
  std::optional<double> ksmd_cpu_seconds_total;

  // What merging saves now: the duplicate copies dropped (pages_sharing) plus empty pages mapped
  // to the zero page (ksm_zero_pages, with use_zero_pages).
  std::uint64_t savings_bytes() const { return sharing_bytes + zero_pages_bytes.value_or(0); }

  friend bool operator==(const KsmSample&, const KsmSample&) = default;
};

}  // namespace memtide

namespace memtide {

// KSM settings memtide may write; unset fields are left as they are.
struct KsmSettings {
  std::optional<std::uint64_t> run;            // 0 stop, 1 merge, 2 stop and unmerge all
  std::optional<std::uint64_t> pages_to_scan;  // 1 .. 2^32-1
  std::optional<std::uint64_t> sleep_ms;       // 0 .. 2^32-1
  std::optional<bool> merge_across_nodes;      // changed only through run=2 (EBUSY otherwise)
  std::optional<bool> use_zero_pages;
  std::optional<std::string> advisor_mode;                        // "none" or "scan-time"
  std::optional<std::uint64_t> advisor_max_cpu_percent;           // 1 .. 100
  std::optional<std::uint64_t> advisor_target_scan_time_seconds;  // 1 .. 2^32-1
  friend bool operator==(const KsmSettings&, const KsmSettings&) = default;
};

// The files under /sys/kernel/mm/ksm that KsmSettings' fields are written to.
inline constexpr const char* kKsmSettingFiles[] = {"run",
                                                   "pages_to_scan",
                                                   "sleep_millisecs",
                                                   "merge_across_nodes",
                                                   "use_zero_pages",
                                                   "advisor_mode",
                                                   "advisor_max_cpu",
                                                   "advisor_target_scan_time"};

}  // namespace memtide
